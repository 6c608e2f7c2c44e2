//! `orchestra-loadtest` binary: parse the command line, raise the file-descriptor limit, build
//! the runtime, run the mode, print its report. See `orchestra-loadtest --help`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use orchestra_loadtest::cli::Cli;
use orchestra_loadtest::modes;
use orchestra_loadtest::stats::first_errors;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = cli.mode.common().clone();
    raise_fd_limit();
    let (rt, threads) = match orchestra_bench::runtime::build(common.threads) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("orchestra-loadtest: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(modes::run(cli.mode, threads));
    rt.shutdown_timeout(Duration::from_millis(200));
    for (kind, detail) in first_errors() {
        eprintln!("orchestra-loadtest: first {} error: {detail}", kind.name());
    }
    match result {
        Ok(report) => {
            if common.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("orchestra-loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Lifts the soft `RLIMIT_NOFILE` to the hard limit: thousands of connections need it.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
