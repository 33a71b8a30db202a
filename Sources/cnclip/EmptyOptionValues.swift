import ArgumentParser

// The reference's run scripts pass `--flag=${VAR}` with VAR often empty (zeroshot_eval.sh: `--index=${index}`);
// Python's argparse reads that as the empty string, while ArgumentParser would take the next argument as the value
// or report it missing. Splitting `--flag=` into `--flag ""` before parsing gives argparse's meaning.
extension CNCLIP {
    /// Entry point: parses the command line with argparse's reading of `--flag=` and runs the subcommand
    /// (async, because `cnclip serve` runs an async server).
    static func main() async {
        await main(argparseCompatibleArguments(Array(CommandLine.arguments.dropFirst())))
    }
}

/// `arguments` with every `--name=` (long option, empty value, before any `--`) split into `--name` and `""`.
func argparseCompatibleArguments(_ arguments: [String]) -> [String] {
    var out: [String] = []
    var afterTerminator = false
    for a in arguments {
        if a == "--" { afterTerminator = true }
        if !afterTerminator, a.count > 3, a.hasPrefix("--"), a.hasSuffix("="), a.dropLast().firstIndex(of: "=") == nil {
            out.append(String(a.dropLast()))
            out.append("")
        } else {
            out.append(a)
        }
    }
    return out
}
