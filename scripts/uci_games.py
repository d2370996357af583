"""What scripts/gamebench.py and scripts/parity.py share: the fixed real games of
data/bench/games.txt and a plain UCI engine driver over stdin/stdout."""
import pathlib
import subprocess
import sys

GAMES = pathlib.Path(__file__).resolve().parent.parent / "data" / "bench" / "games.txt"


def games():
    """The games of data/bench/games.txt: (start FEN, moves in UCI) each."""
    for line in GAMES.read_text().splitlines():
        if line and not line.startswith("#"):
            fen, moves = (part.strip() for part in line.split("|"))
            yield fen, moves.split()


def position(fen, moves):
    """The `position` command for `fen` followed by `moves`."""
    return f"position fen {fen} moves {' '.join(moves)}".rstrip()


class Engine:
    """A UCI engine process, its options set and `readyok` seen."""

    def __init__(self, command, options):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.send("uci")
        self.until("uciok")
        for name, value in options:
            self.send(f"setoption name {name} value {value}")
        self.send("isready")
        self.until("readyok")

    def send(self, line):
        self.process.stdin.write(line + "\n")

    def until(self, prefix):
        """The lines up to and including the first that starts with `prefix`."""
        lines = []
        while True:
            line = self.process.stdout.readline()
            if not line:
                sys.exit(f"{self.process.args[0]} exited before '{prefix}'")
            lines.append(line.strip())
            if line.startswith(prefix):
                return lines

    def quit(self):
        self.send("quit")
        self.process.wait()
