//! `oslively man [DIR]`: the manual pages, generated from the same clap
//! definitions as `--help` (so they cannot drift): oslively(1), and with a
//! directory also one page per subcommand, oslively-register(1) and so on,
//! which oslively(1)'s SUBCOMMANDS section refers to.

use std::io::Write;
use std::path::Path;

/// Writes oslively(1) to `out`.
pub fn render_main(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(cmd).render(out)
}

/// Writes oslively.1 and oslively-<subcommand>.1 for every visible
/// subcommand into `dir` (created if missing); returns the files written.
pub fn write_all(cmd: clap::Command, dir: &Path) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut pages = vec![("oslively.1".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("oslively-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("oslively {}", sub.get_name()))
            .version(cmd.get_version().unwrap_or_default().to_string());
        pages.push((format!("{name}.1"), page));
    }
    let mut written = Vec::new();
    for (file, page) in pages {
        let path = dir.join(&file);
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .map_err(|e| format!("rendering {file}: {e}"))?;
        std::fs::write(&path, buf).map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(file);
    }
    Ok(written)
}
