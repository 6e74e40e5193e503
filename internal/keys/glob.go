package keys

// GlobMatch reports whether key matches the Redis glob pattern (the syntax
// of SCAN MATCH and KEYS: * ? [abc] [^a] [a-z] and \ to escape), byte for
// byte as Redis' stringmatchlen does.
func GlobMatch(pattern, key string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 1 && pattern[1] == '*' {
				pattern = pattern[1:]
			}
			if len(pattern) == 1 {
				return true
			}
			for i := 0; i <= len(key); i++ {
				if GlobMatch(pattern[1:], key[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(key) == 0 {
				return false
			}
			key = key[1:]
		case '[':
			if len(key) == 0 {
				return false
			}
			p := pattern[1:]
			not := len(p) > 0 && p[0] == '^'
			if not {
				p = p[1:]
			}
			match := false
			for len(p) > 0 && p[0] != ']' {
				switch {
				case p[0] == '\\' && len(p) >= 2:
					p = p[1:]
					match = match || p[0] == key[0]
				case len(p) >= 3 && p[1] == '-':
					lo, hi := p[0], p[2]
					if lo > hi {
						lo, hi = hi, lo
					}
					match = match || (key[0] >= lo && key[0] <= hi)
					p = p[2:]
				default:
					match = match || p[0] == key[0]
				}
				p = p[1:]
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			key = key[1:]
			if len(p) == 0 { // unterminated: Redis treats the end as the close
				return len(key) == 0
			}
			pattern = p // at ']'
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if len(key) == 0 || pattern[0] != key[0] {
				return false
			}
			key = key[1:]
		}
		pattern = pattern[1:]
	}
	return len(key) == 0
}
