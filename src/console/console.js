// The console's only script (embedded in the binary). Pages work without it; it adds
// interaction only.
