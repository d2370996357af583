#!/usr/bin/env python3
"""The game benchmark for any UCI engine (scripts/measure runs it for Lc0): replays the games of
data/bench/games.txt ply by ply in one engine process (so the engine may keep its tree), sends
`go nodes N` at every ply, and prints new nodes per second of wall time from `go` to
`bestmove` and the median time per move, in the layout of `banyan bench --game`.

New nodes are this search's playouts: the last `info`'s `nps` times its `time`, where it has
both, else its `nodes`. (Lc0's `nodes` counts the visits kept from earlier searches too, which
cost this search nothing; its `nps` counts only this search's playouts.)

Usage: gamebench.py --nodes N [--option Name=Value ...] -- ENGINE [ARGS...]
"""
import argparse
import time

from uci_games import Engine, games, position


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=800)
    parser.add_argument("--option", action="append", default=[])
    parser.add_argument("engine", nargs="+")
    args = parser.parse_args()
    engine = Engine(args.engine, [option.split("=", 1) for option in args.option])
    total_nodes, total_time, times = 0, 0.0, []
    for g, (fen, moves) in enumerate(games(), 1):
        engine.send("ucinewgame")
        game_nodes, game_time = 0, 0.0
        for ply in range(len(moves)):
            engine.send(position(fen, moves[:ply]))
            engine.send("isready")
            engine.until("readyok")
            started = time.monotonic()
            engine.send(f"go nodes {args.nodes}")
            lines = engine.until("bestmove")
            took = time.monotonic() - started
            nodes = 0
            for l in lines:
                words = l.split()
                if words[:1] == ["info"] and "nodes" in words:
                    nodes = int(words[words.index("nodes") + 1])
                    if "nps" in words and "time" in words:
                        nps = int(words[words.index("nps") + 1])
                        ms = int(words[words.index("time") + 1])
                        nodes = round(nps * ms / 1000)
            game_nodes += nodes
            game_time += took
            times.append(took)
        print(f"game {g}: {len(moves)} plies, new nodes {game_nodes}, "
              f"time {game_time * 1000:.0f} ms, nodes/s {game_nodes / game_time:.0f}")
        total_nodes += game_nodes
        total_time += game_time
    engine.quit()
    times.sort()
    print(f"Game nodes/second: {total_nodes / total_time:.0f}  "
          f"Median time/move: {times[len(times) // 2] * 1000:.0f} ms  Moves: {len(times)}")


if __name__ == "__main__":
    main()
