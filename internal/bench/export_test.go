package bench

// DropSlot is dropSlot, for the test that holds a slot active.
var DropSlot = dropSlot
