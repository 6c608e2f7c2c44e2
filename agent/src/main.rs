//! `orchestra-agent`: the agent for worker machines (being built; see issue "Agent hub").

fn main() {
    eprintln!("orchestra-agent: not built yet");
    std::process::exit(1);
}
