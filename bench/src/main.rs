//! Parley's benchmark harness (being built).
fn main() {
    println!("bench: no scenario yet");
}
