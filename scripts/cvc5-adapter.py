#!/usr/bin/env python3
"""cvc5-adapter.py — the `cvc5` command, made from PyPI's `cvc5` wheel (which ships the library
and its Python API but no executable).

acgs's verification service drives the solver the way cedar-policy-symcc does: it starts
`cvc5 --lang smt [--tlimit-per=MS] ...`, writes SMT-LIB 2 commands to stdin one after another and
waits for each answer (`sat`/`unsat`/`unknown` after `(check-sat)`, the model after `(get-model)`)
before writing more. This adapter behaves like the executable in that interactive use:

* reads stdin incrementally, one complete command (balanced parentheses, outside strings,
  quoted symbols and comments) at a time, and runs it through cvc5's own parser and command
  objects (`InputParser`, `SymbolManager`, `Command.invoke`), so answers and models are printed
  exactly as the executable prints them; flushes after every answer;
* applies command-line options (`--tlimit-per=MS`, `--tlimit=MS`, `--opt=value`, `--opt value`
  for options taking a value, `--flag`) and re-applies them after every `(reset)`, as the
  executable keeps command-line options across resets;
* reports errors as `(error "...")`; a parse error ends the process like the executable does;
* `--version` prints `This is cvc5 version X.Y.Z ...`.

scripts/test.sh installs the wheel and a `cvc5` wrapper that execs this file; DESIGN §8 explains
why (Debian 12's cvc5 is 1.0.3, too old for cedar-policy-symcc).
"""

import sys

LANGS = {"smt", "smt2", "smt2.6", "smtlib2.6", "smt_lib_2_6"}


def usage_error(message):
    sys.stderr.write(f"cvc5-adapter: {message}\n")
    sys.exit(1)


def parse_args(argv):
    """Returns the solver options to apply, as (name, value) pairs."""
    options = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("--version", "-V"):
            return None
        if arg in ("--interactive", "--incremental", "-q", "--quiet"):
            continue
        if not arg.startswith("--"):
            usage_error(f"unexpected argument {arg!r} (input is read from stdin only)")
        name, sep, value = arg[2:].partition("=")
        if name == "lang" or name == "input-language":
            if not sep:
                if i >= len(argv):
                    usage_error("--lang needs a value")
                value = argv[i]
                i += 1
            if value.lower() not in LANGS:
                usage_error(f"only SMT-LIB 2 input is supported, not {value!r}")
            continue
        if not sep:
            if name.startswith("no-"):
                name, value = name[3:], "false"
            else:
                value = "true"
        options.append((name, value))
    return options


def escape(message):
    return message.replace('"', '""').replace("\n", " ")


class Reader:
    """Splits stdin into complete top-level SMT-LIB commands, one at a time, without waiting for
    more input than the command needs: symcc writes a command and then waits for its answer."""

    def __init__(self, stream):
        self.stream = stream

    def commands(self):
        depth = 0
        in_string = in_quoted = False
        current = []
        while True:
            line = self.stream.readline()
            if not line:
                rest = "".join(current).strip()
                if rest:
                    yield rest
                return
            text = line.decode("utf-8", errors="replace")
            for c in text:
                if in_string:
                    current.append(c)
                    in_string = c != '"'
                    continue
                if in_quoted:
                    current.append(c)
                    in_quoted = c != "|"
                    continue
                if c == ";" and depth == 0 and not "".join(current).strip():
                    break
                if c == ";":
                    # A comment inside a command: drop the rest of the line.
                    current.append("\n")
                    break
                current.append(c)
                if c == '"':
                    in_string = True
                elif c == "|":
                    in_quoted = True
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth <= 0:
                        depth = 0
                        yield "".join(current).strip()
                        current = []
            if depth == 0 and not in_string and not in_quoted:
                rest = "".join(current).strip()
                current = []
                if rest:
                    # Something outside parentheses: let the parser report it.
                    yield rest


def main():
    options = parse_args(sys.argv[1:])
    try:
        import cvc5
    except ImportError as e:
        usage_error(f"the cvc5 Python package is not installed ({e}); run scripts/test.sh or pip install cvc5")
    tm = cvc5.TermManager()
    solver = cvc5.Solver(tm)
    if options is None:
        version = solver.getVersion()
        if isinstance(version, bytes):
            version = version.decode()
        print(f"This is cvc5 version {version.split('-')[0]} (Python API {version}, acgs scripts/cvc5-adapter.py)")
        return 0
    symbols = cvc5.SymbolManager(tm)

    def apply_options():
        for name, value in options:
            solver.setOption(name, value)

    try:
        apply_options()
    except Exception as e:  # noqa: BLE001 - the library raises plain RuntimeError
        usage_error(f"bad option: {e}")
    parser = cvc5.InputParser(solver, symbols)
    out = sys.stdout
    for chunk in Reader(sys.stdin.buffer).commands():
        # One command per parse, so a `(reset)` can start from a fresh symbol manager (the old
        # one would keep its logic, and the next `(set-logic ALL)` would be refused).
        parser.setIncrementalStringInput(cvc5.InputLanguage.SMT_LIB_2_6, "<stdin>")
        parser.appendIncrementalStringInput(chunk)
        while True:
            try:
                command = parser.nextCommand()
            except Exception as e:  # noqa: BLE001
                out.write(f'(error "Parse Error: <stdin>: {escape(str(e))}")\n')
                out.flush()
                return 1
            if command.isNull():
                break
            text = str(command)
            if text.startswith("(exit"):
                out.flush()
                return 0
            try:
                answer = command.invoke(solver, symbols)
            except Exception as e:  # noqa: BLE001
                out.write(f'(error "{escape(str(e))}")\n')
                out.flush()
                continue
            if answer.startswith("unknown"):
                # The library adds the reason (`unknown (TIMEOUT)`); the executable prints the
                # bare SMT-LIB answer, which is what symcc reads.
                answer = "unknown\n"
            if answer:
                out.write(answer)
                out.flush()
            if text.startswith("(reset)"):
                apply_options()
                symbols = cvc5.SymbolManager(tm)
                parser = cvc5.InputParser(solver, symbols)
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
