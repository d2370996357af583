#!/usr/bin/env python3
"""Search parity with Lc0: how close an engine's search comes to Lc0's sequential one.

For every position of the games in data/bench/games.txt, Lc0 searches `go nodes N` with one
thread and minibatch 1 (`NodesAsPlayouts true`, `SmartPruningFactor 0`, a fresh tree each
time): the reference, a search with no leaves gathered ahead. The engine under test searches
the same positions with the same net and the options given, and the script prints how often
its best move is the reference's and the mean L1 distance between the two root visit shares
(from `VerboseMoveStats`, Lc0's format). The same rules give the same search: Banyan with one
thread and minibatch 1 agrees on about 94% of positions (the rest are near-ties that float
rounding turns); what a faster setting gathers ahead of time shows up as lost agreement.

Usage:
  OPENBLAS_CORETYPE=SkylakeX python3 scripts/parity.py --lc0 ../shared/bin/lc0 \\
      --weights ../shared/nets/maia-1900.pb.gz [--nodes 800] [--option Threads=2 ...] \\
      -- target/release/banyan
"""
import argparse
import re

from uci_games import Engine, games, position

STATS = re.compile(r"info string (\S+)\s+\(\s*\d+\s*\)\s+N:\s+(\d+)")


def search(engine, at, nodes):
    """The best move and the root visits of each move after `go nodes` from a fresh tree."""
    engine.send("ucinewgame")
    engine.send(at)
    engine.send(f"go nodes {nodes}")
    lines = engine.until("bestmove")
    visits = {}
    for line in lines:
        match = STATS.match(line)
        if match and match.group(1) != "node":
            visits[match.group(1)] = int(match.group(2))
    return lines[-1].split()[1], visits


def l1(a, b):
    """L1 distance between two visit distributions, as shares."""
    na, nb = sum(a.values()) or 1, sum(b.values()) or 1
    return sum(abs(a.get(m, 0) / na - b.get(m, 0) / nb) for m in set(a) | set(b))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lc0", required=True, help="the Lc0 binary (the reference)")
    parser.add_argument("--weights", required=True, help="the network both engines load")
    parser.add_argument("--nodes", type=int, default=800)
    parser.add_argument("--option", action="append", default=[],
                        help="Name=Value for the engine under test")
    parser.add_argument("--worst", type=int, default=0,
                        help="also print the positions farthest from the reference")
    parser.add_argument("engine", nargs="+")
    args = parser.parse_args()

    reference = Engine([args.lc0], [
        ("WeightsFile", args.weights), ("Threads", 1), ("MinibatchSize", 1),
        ("NodesAsPlayouts", "true"), ("SmartPruningFactor", 0), ("VerboseMoveStats", "true")])
    tested = Engine(args.engine, [("WeightsFile", args.weights), ("VerboseMoveStats", "true")]
                    + [tuple(o.split("=", 1)) for o in args.option])
    positions = [position(fen, moves[:ply]) for fen, moves in games()
                 for ply in range(len(moves))]
    same, distance, far = 0, 0.0, []
    for at in positions:
        best, visits = search(reference, at, args.nodes)
        ours, our_visits = search(tested, at, args.nodes)
        same += ours == best
        d = l1(our_visits, visits)
        distance += d
        far.append((d, at, best, ours))
    reference.quit()
    tested.quit()
    for d, at, best, ours in sorted(far, reverse=True)[:args.worst]:
        print(f"L1 {d:.3f}  Lc0 {best}  tested {ours}  {at}")
    n = len(positions)
    print(f"positions: {n}  same best move as Lc0's sequential search: {same} ({same / n:.1%})  "
          f"mean L1 of the root visit shares: {distance / n:.3f}")


if __name__ == "__main__":
    main()
