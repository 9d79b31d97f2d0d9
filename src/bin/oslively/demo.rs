pub(crate) fn run(_args: &[String]) -> Result<std::process::ExitCode, String> {
    Err("not yet".into())
}
