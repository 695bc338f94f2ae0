//! `kith completions SHELL`: clap's completion script for the commands and flags,
//! plus (bash, zsh and fish) contact and group names where a command takes one. The
//! names come from `kith complete-names` at the moment of completion, so they follow
//! the contact list without regenerating the script.

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::print;
use crate::args::{Cli, Global};
use crate::failure::Result;
use crate::output;

/// Commands whose first argument is a contact or group (`group …` ones: their first
/// two, the group and the member).
const TAKES_A_NAME: &str = "send history read accept reject block unblock remove rename";

/// bash: after clap's completion, a word in a name's position completes to names
/// (asking the home a `--home` on the line names).
const BASH_NAMES: &str = r#"
_kith_with_names() {
    _kith "$@"
    local cur="${COMP_WORDS[COMP_CWORD]}"
    [[ "$cur" == -* ]] && return 0
    # The words before the cursor without options, and the --home to ask.
    local -a words=() home=()
    local i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "$w" in
            --home) home=(--home "${COMP_WORDS[i+1]}"); ((i++)) ;;
            --home=*) home=(--home "${w#--home=}") ;;
            --wait|--timeout|--limit|--before|--name) ((i++)) ;;
            -*) ;;
            *) words+=("$w") ;;
        esac
    done
    local takes=0
    if [[ ${#words[@]} -eq 1 && " __TAKES__ " == *" ${words[0]} "* ]]; then
        takes=1
    elif [[ "${words[0]}" == group && ( ${#words[@]} -eq 2 || ${#words[@]} -eq 3 ) \
            && " create list invites help " != *" ${words[1]} "* ]]; then
        takes=1
    fi
    if [[ $takes -eq 1 ]]; then
        local IFS=$'\n'
        COMPREPLY=( $(compgen -W "$(kith "${home[@]}" complete-names 2>/dev/null)" -- "$cur") )
    fi
}
complete -F _kith_with_names -o bashdefault -o default kith
"#;

/// fish: names right after the commands that take one, and in a `group` command's
/// group and member places (global options on the line are not looked at).
const FISH_NAMES: &str = r#"
complete -c kith -n "__fish_seen_subcommand_from __TAKES__; and test (count (commandline -opc)) -eq 2" -f -a "(kith complete-names 2>/dev/null)"
complete -c kith -n "__fish_seen_subcommand_from group; and test (count (commandline -opc)) -ge 3 -a (count (commandline -opc)) -le 4" -f -a "(kith complete-names 2>/dev/null)"
"#;

/// zsh: the completer of contact and group names, defined before clap's script
/// registers `_kith` (asking the home a `--home` on the line names).
const ZSH_NAMES: &str = r#"
_kith_names() {
    local -a names home
    [[ -n ${opt_args[--home]} ]] && home=(--home ${opt_args[--home]})
    names=("${(@f)$(kith $home complete-names 2>/dev/null)}")
    names=("${(@)names//:/\\:}")
    _describe -t names 'contact or group' names
}
"#;

/// Prints the script for `shell`.
pub(crate) fn print(shell: Shell) -> Result {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kith", &mut script);
    let script = String::from_utf8_lossy(&script);
    let script = match shell {
        Shell::Bash => format!("{script}{}", BASH_NAMES.replace("__TAKES__", TAKES_A_NAME)),
        Shell::Fish => format!("{script}{}", FISH_NAMES.replace("__TAKES__", TAKES_A_NAME)),
        Shell::Zsh => zsh_with_names(&script),
        _ => script.into_owned(),
    };
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, script.trim_end().as_bytes())?;
    std::io::Write::write_all(&mut out, b"\n")?;
    Ok(())
}

/// clap's zsh script with the CONTACT, GROUP and MEMBER arguments completed by
/// `_kith_names` instead of file names.
fn zsh_with_names(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + ZSH_NAMES.len());
    for line in script.lines() {
        let takes_a_name = [":contact -- ", ":group -- ", ":member -- "].iter().any(|arg| line.starts_with(&format!("'{arg}")));
        if takes_a_name && line.ends_with(":_default' \\") {
            out.push_str(&line.replacen(":_default' \\", ":_kith_names' \\", 1));
        } else {
            if line.starts_with("if [ \"$funcstack[1]\" = \"_kith\" ]") {
                out.push_str(ZSH_NAMES.trim_start());
                out.push('\n');
            }
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Contact aliases (or names) and group names, one per line; nothing when the home
/// cannot be read (completion must never print errors into a prompt).
pub(crate) fn names(global: &Global) -> Result {
    let Ok(names) = super::home(global).and_then(|home| print::Names::load(&home)) else { return Ok(()) };
    for name in names.all().filter(|n| !n.contains('\n')) {
        output::line(name)?;
    }
    Ok(())
}
