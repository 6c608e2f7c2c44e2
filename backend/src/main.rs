//! `orchestra-backend`: the persistence service of Orchestra Gateway.

fn main() {
    eprintln!("orchestra-backend: not built yet");
    std::process::exit(1);
}
