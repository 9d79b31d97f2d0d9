//! Fallible C functions must have their result checked (issue 24, item
//! 11): the header marks them `LIVELY_MUST_USE`, so ignoring one fails a
//! `-Werror` build in C and C++, and every C snippet of the README and of
//! docs/c.md checks its results (each compiled here under `-Wall -Wextra -Werror
//! -Wpedantic`). Needs `cc` (and `c++` for the C++ check).

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles `source` to an object file; Ok or the compiler's output.
fn compile(compiler: &str, std: &str, lang: &str, source: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("snippet.{lang}"));
    std::fs::write(&file, source).expect("write snippet");
    let include = manifest_dir().join("include");
    let out = Command::new(compiler)
        .arg(format!("-std={std}"))
        // Compiled, not only parsed: GCC reports unused results while
        // lowering, which -fsyntax-only skips.
        .args(["-Wall", "-Wextra", "-Werror", "-Wpedantic", "-c", "-o"])
        .arg(dir.path().join("snippet.o"))
        .arg("-I")
        .arg(&include)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The ```c blocks of a Markdown file.
fn c_blocks(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read a Markdown file");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim() == "```c" => current = Some(String::new()),
            Some(block) if line.trim() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// A snippet as a function of a translation unit: its includes at the top,
/// `client` a parameter unless the snippet connects one itself.
fn as_unit(snippet: &str) -> String {
    let (includes, body): (Vec<&str>, Vec<&str>) = snippet
        .lines()
        .partition(|l| l.trim_start().starts_with("#include"));
    let param = if snippet.contains("lively_client *client =") {
        "void"
    } else {
        "const lively_client *client"
    };
    format!(
        "#include <stdbool.h>\n#include <stdio.h>\n#include <os_lively.h>\n{}\n\
         static void do_one_unit_of_work(void) {{}}\n\
         int snippet({param});\nint snippet({param}) {{\n(void)do_one_unit_of_work;\n{}\nreturn 0;\n}}\n",
        includes.join("\n"),
        body.join("\n")
    )
}

/// The Markdown files whose ```c blocks are checked: the README's short
/// example and the C reference page.
const C_DOCS: [&str; 2] = ["README.md", "docs/c.md"];

#[test]
fn readme_c_snippets_check_every_result() {
    for doc in C_DOCS {
        let blocks = c_blocks(&manifest_dir().join(doc));
        assert!(
            !blocks.is_empty(),
            "expected C snippets in {doc}, found none"
        );
        for (i, block) in blocks.iter().enumerate() {
            let unit = as_unit(block);
            if let Err(out) = compile("cc", "c11", "c", &unit) {
                panic!("{doc}: C snippet {i} does not compile cleanly:\n{unit}\n{out}");
            }
        }
    }
}

#[test]
fn an_ignored_result_fails_a_werror_build() {
    let ignored = "#include <os_lively.h>\nvoid f(const lively_client *c);\n\
                   void f(const lively_client *c) { lively_client_close(c); }\n";
    let err = compile("cc", "c11", "c", ignored).expect_err("an ignored result compiled in C");
    assert!(err.contains("unused"), "{err}");
    let checked = "#include <os_lively.h>\nint f(const lively_client *c);\n\
                   int f(const lively_client *c) { return lively_client_close(c) ? 1 : 0; }\n";
    compile("cc", "c11", "c", checked).expect("a checked result");
    if Command::new("c++").arg("--version").output().is_ok() {
        let err =
            compile("c++", "c++17", "cpp", ignored).expect_err("an ignored result compiled in C++");
        assert!(err.contains("nodiscard") || err.contains("unused"), "{err}");
        let discarded = "#include <os_lively.h>\nvoid f(const lively_client *c);\n\
                         void f(const lively_client *c) { (void)lively_client_close(c); }\n";
        compile("c++", "c++17", "cpp", discarded).expect("an explicit (void) discard in C++");
    }
}
