-- lib_version.lua: The protocol and revision of the cachekeeper_v1 function library (function
-- ck1_version; see docs/read-protocol.md). Raise the revision (and redisx.LibraryRevision)
-- with every change of a function of the library.
--
-- KEYS     none
-- ARGV     none
-- Returns  {1, revision}
return {1, 1}
