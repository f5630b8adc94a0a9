//! The `kybern` command.
fn main() {}
