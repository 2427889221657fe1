use std::process::ExitCode;

fn main() -> ExitCode {
    hera_migrate::cli::main()
}
