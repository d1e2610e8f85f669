//! `load_dir`: the `.rego` files of a directory tree, as modules.

use std::path::{Path, PathBuf};

use crate::LoadError;
use crate::set::PolicyModule;

/// Every `*.rego` file under `dir`, at any depth, sorted by name. A module's
/// name is its path as `dir` was given joined with the file's path below it
/// (`examples/policies/oncall.rego`), which is how compile errors and test
/// results name it. `dir` may also be a single `.rego` file.
pub fn load_dir(dir: &Path) -> Result<Vec<PolicyModule>, LoadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Io { path, source }
    };
    let mut files = Vec::new();
    if std::fs::metadata(dir).map_err(io(dir))?.is_file() {
        files.push(dir.to_path_buf());
    } else {
        collect(dir, &mut files)?;
    }
    if files.is_empty() {
        return Err(LoadError::NoRegoFiles { dir: dir.to_path_buf() });
    }
    let mut modules = Vec::with_capacity(files.len());
    for file in files {
        let source = std::fs::read_to_string(&file).map_err(io(&file))?;
        modules.push(PolicyModule {
            name: file.to_string_lossy().into_owned(),
            source,
        });
    }
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(modules)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io)?;
        let is_rego = path.extension().is_some_and(|ext| ext == "rego");
        if kind.is_dir() {
            collect(&path, files)?;
        } else if is_rego && (kind.is_file() || path.is_file()) {
            // A link to a file counts; links to directories are not followed,
            // so a link back up the tree cannot loop.
            files.push(path);
        }
    }
    Ok(())
}
