//! `tessera-bench`: load a TiKV-compatible cluster or etcd with a YCSB-style workload and
//! report throughput and latency percentiles. `tessera-bench --help` lists the flags.

use std::process::ExitCode;

use bench::args::{parse_from, CliError};

fn main() -> ExitCode {
    let config = match parse_from(std::env::args_os()) {
        Ok(c) => c,
        // clap prints its own message (and --help / --version) and picks the exit code: 2
        // for a bad command line, 0 for help.
        Err(CliError::Clap(e)) => e.exit(),
        Err(CliError::Invalid(e)) => {
            eprintln!("error: {e}\n\nFor more information, try '--help'.");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(bench::run(&config)) {
        Ok(report) => {
            if config.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            // The figures are printed either way; a broken bank still fails the run.
            if let Some(violation) = report.invariant_violation() {
                eprintln!("error: {violation}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
