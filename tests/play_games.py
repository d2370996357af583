#!/usr/bin/env python3
"""Plays whole games between Banyan and an opponent through python-chess, a real UCI client.

Used by tests/games.rs (a few games, asserted on) and by scripts/match (a longer match when no
cutechess-cli or fastchess is installed). Prints one JSON summary on stdout; progress goes to
stderr.

Every move an engine sends is checked for legality, clocks are kept here (wall time around
each `go` ... `bestmove`), and an engine that does not answer a `go` within the limit plus a
grace period counts as a missing bestmove. A game ends by the rules of chess (mate, stalemate,
insufficient material, threefold repetition, 50-move rule, as python-chess claims them) or is
adjudicated a draw at --max-plies.

Opponents:
  stockfish       the binary given by --stockfish, with UCI_LimitStrength and UCI_Elo
  self            a second Banyan process (same binary, same options)

Limits (per move): --tc BASE+INC (seconds, per side, clocks kept here) or --nodes N.
"""

import argparse
import json
import logging
import math
import sys
import threading
import time
import asyncio

try:
    import chess
    import chess.engine
except ImportError:  # pragma: no cover - reported to the Rust test as a clear failure
    sys.stderr.write(
        "play_games.py: python-chess is not installed; run scripts/test (it creates .venv)\n"
    )
    sys.exit(3)


class Lines(logging.Handler):
    """Collects every line each engine prints (python-chess logs them at DEBUG)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.mutex = threading.Lock()
        self.by_protocol = {}
        # The last lines both ways, to show what happened when something goes wrong.
        self.recent = {}

    def emit(self, record):
        if record.msg not in ("%s: >> %s", "%s: << %s") or len(record.args) != 2:
            return
        protocol, line = record.args
        with self.mutex:
            recent = self.recent.setdefault(id(protocol), [])
            recent.append(("> " if ">>" in record.msg else "< ") + line[:4000])
            del recent[:-12]
            if ">>" in record.msg:
                self.by_protocol.setdefault(id(protocol), []).append(line)

    def last_lines(self, engine):
        with self.mutex:
            return list(self.recent.get(id(engine.protocol), []))

    def take(self, engine):
        with self.mutex:
            return self.by_protocol.pop(id(engine.protocol), [])


class Player:
    """One engine process and what went wrong with it."""

    def __init__(self, name, command, options, is_banyan, lines):
        self.name = name
        self.command = command
        self.options = options
        self.is_banyan = is_banyan
        self.lines = lines
        self.engine = None
        self.game = None
        self.problems = {
            "illegal_moves": 0,
            "time_losses": 0,
            "crashes": 0,
            "missing_bestmove": 0,
            "errors": 0,  # `info string error` lines
        }
        self.error_samples = []
        self.moves = 0
        self.move_seconds_max = 0.0

    def start(self):
        self.engine = chess.engine.SimpleEngine.popen_uci(self.command, timeout=30)
        if self.options:
            self.engine.configure(self.options)

    def alive(self):
        return self.engine is not None and not self.engine.protocol.returncode.done()

    def scan_output(self):
        if self.engine is None:
            return
        for line in self.lines.take(self.engine):
            if line.startswith("info string error"):
                self.problems["errors"] += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(line[:200])

    def new_game(self):
        # A fresh object per game: python-chess sends `ucinewgame` when it changes.
        self.game = object()
        if not self.alive():
            if self.engine is not None:
                self.problems["crashes"] += 1
                self.close()
            self.start()

    def play(self, board, limit, timeout):
        """`go` on `board`; returns (move or None, seconds, what went wrong or None)."""
        coro = asyncio.wait_for(
            self.engine.protocol.play(board, limit, game=self.game, info=chess.engine.INFO_NONE),
            timeout,
        )
        started = time.monotonic()
        future = asyncio.run_coroutine_threadsafe(coro, self.engine.protocol.loop)
        try:
            result = future.result()
        except (asyncio.TimeoutError, TimeoutError):
            return None, time.monotonic() - started, "missing_bestmove"
        except chess.engine.EngineTerminatedError:
            return None, time.monotonic() - started, "crashes"
        except chess.engine.EngineError as e:
            # python-chess refuses a bestmove that is not legal on the board.
            sys.stderr.write(f"{self.name}: {e}\n")
            return None, time.monotonic() - started, "illegal_moves"
        seconds = time.monotonic() - started
        self.moves += 1
        self.move_seconds_max = max(self.move_seconds_max, seconds)
        move = result.move
        if move is None or move not in board.legal_moves:
            return None, seconds, "illegal_moves"
        return move, seconds, None

    def close(self):
        if self.engine is None:
            return
        self.scan_output()
        try:
            self.engine.quit()
        except Exception:
            try:
                self.engine.close()
            except Exception:
                pass
        self.engine = None


def read_openings(path):
    openings = []
    with open(path) as f:
        for raw in f:
            raw = raw.strip()
            if not raw or raw.startswith("#"):
                continue
            board, ops = chess.Board.from_epd(raw)
            openings.append((ops.get("id", f"line{len(openings) + 1}"), board.fen()))
    if not openings:
        raise SystemExit(f"play_games.py: no positions in {path}")
    return openings


def parse_tc(text):
    base, _, inc = text.partition("+")
    return float(base), float(inc or 0)


def play_game(white, black, fen, args):
    """One game; returns a dict describing it. `white`/`black` are Players."""
    board = chess.Board(fen)
    players = {chess.WHITE: white, chess.BLACK: black}
    for p in (white, black):
        p.new_game()
    clock = {}
    if args.tc:
        base, inc = parse_tc(args.tc)
        clock = {chess.WHITE: base, chess.BLACK: base}
    result, termination, loser_problem, trace = None, None, None, None
    min_clock = math.inf
    plies = 0
    while True:
        outcome = board.outcome(claim_draw=True)
        if outcome is not None:
            result = outcome.result()
            termination = outcome.termination.name.lower()
            break
        if plies >= args.max_plies:
            result, termination = "1/2-1/2", f"adjudicated_draw_at_{args.max_plies}_plies"
            break
        side = board.turn
        mover = players[side]
        if args.tc:
            limit = chess.engine.Limit(
                white_clock=clock[chess.WHITE],
                black_clock=clock[chess.BLACK],
                white_inc=inc,
                black_inc=inc,
            )
            timeout = clock[side] + args.grace
        else:
            limit = chess.engine.Limit(nodes=args.nodes)
            timeout = args.grace
        move, seconds, problem = mover.play(board, limit, timeout)
        if problem is None and args.tc:
            clock[side] -= seconds
            if clock[side] < 0:
                problem = "time_losses"
            else:
                min_clock = min(min_clock, clock[side])
                clock[side] += inc
        if problem is not None:
            mover.problems[problem] += 1
            if mover.engine is not None:
                trace = mover.lines.last_lines(mover.engine)
            loser_problem = f"{mover.name}: {problem}"
            result = "0-1" if side == chess.WHITE else "1-0"
            termination = problem
            if problem in ("crashes", "missing_bestmove", "illegal_moves"):
                # Start it afresh for the next game.
                mover.close()
            break
        board.push(move)
        plies += 1
    for p in (white, black):
        p.scan_output()
        if p.engine is not None and not p.alive():
            p.problems["crashes"] += 1
            loser_problem = loser_problem or f"{p.name}: crashes"
            p.close()
    return {
        "white": white.name,
        "black": black.name,
        "result": result,
        "termination": termination,
        "plies": plies,
        "problem": loser_problem,
        "min_clock_left_s": None if min_clock == math.inf else round(min_clock, 3),
        "final_fen": board.fen(),
        "trace": trace,
    }


def elo_estimate(wins, draws, losses):
    """Elo difference and its 95% error bar from the trinomial score variance."""
    n = wins + draws + losses
    if n == 0:
        return None, None
    score = (wins + 0.5 * draws) / n
    var = (wins * (1 - score) ** 2 + draws * (0.5 - score) ** 2 + losses * score**2) / n
    def elo(s):
        s = min(max(s, 1e-6), 1 - 1e-6)
        return -400 * math.log10(1 / s - 1)
    margin = 1.96 * math.sqrt(var / n)
    lo, hi = elo(score - margin), elo(score + margin)
    return round(elo(score), 1), round((hi - lo) / 2, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", required=True, help="path of the banyan binary")
    ap.add_argument("--opponent", choices=["stockfish", "self"], default="stockfish")
    ap.add_argument("--stockfish", default="/usr/games/stockfish")
    ap.add_argument("--elo", type=int, default=1350, help="stockfish UCI_Elo")
    ap.add_argument("--games", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=0, help="stop starting games after this (0: no limit)")
    ap.add_argument("--tc", help="BASE+INC in seconds, e.g. 1+0.1")
    ap.add_argument("--nodes", type=int, help="fixed nodes per move")
    ap.add_argument("--openings", required=True, help="EPD file")
    ap.add_argument("--first-opening", type=int, default=0)
    ap.add_argument("--max-plies", type=int, default=160)
    ap.add_argument("--grace", type=float, default=30.0, help="seconds beyond the clock before a go counts as unanswered")
    ap.add_argument("--option", action="append", default=[], help="Banyan option NAME=VALUE (repeatable)")
    args = ap.parse_args()
    if bool(args.tc) == bool(args.nodes):
        ap.error("give exactly one of --tc and --nodes")

    lines = Lines()
    logger = logging.getLogger("chess.engine")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(lines)
    logger.propagate = False

    options = {}
    for o in args.option:
        name, _, value = o.partition("=")
        options[name] = value
    openings = read_openings(args.openings)
    banyan = Player("banyan", [args.banyan], options, True, lines)
    if args.opponent == "stockfish":
        opponent = Player(
            f"stockfish-{args.elo}",
            [args.stockfish],
            {"UCI_LimitStrength": True, "UCI_Elo": args.elo, "Threads": 1, "Hash": 16},
            False,
            lines,
        )
    else:
        opponent = Player("banyan-2", [args.banyan], options, True, lines)

    started = time.monotonic()
    games = []
    score = {"wins": 0, "draws": 0, "losses": 0}
    try:
        for i in range(args.games):
            if args.minutes and time.monotonic() - started > args.minutes * 60:
                break
            name, fen = openings[(args.first_opening + i // 2) % len(openings)]
            white, black = (banyan, opponent) if i % 2 == 0 else (opponent, banyan)
            t0 = time.monotonic()
            game = play_game(white, black, fen, args)
            game["opening"] = name
            game["seconds"] = round(time.monotonic() - t0, 1)
            games.append(game)
            banyan_white = white is banyan
            if game["result"] == "1/2-1/2":
                score["draws"] += 1
            elif (game["result"] == "1-0") == banyan_white:
                score["wins"] += 1
            else:
                score["losses"] += 1
            sys.stderr.write(
                f"game {i + 1}: {white.name} - {black.name} {game['result']} "
                f"({game['termination']}, {game['plies']} plies, {game['seconds']} s, {name})\n"
            )
    finally:
        for p in (banyan, opponent):
            p.close()

    banyan_players = [p for p in (banyan, opponent) if p.is_banyan]
    total = {k: sum(p.problems[k] for p in banyan_players) for k in banyan.problems}
    elo, margin = elo_estimate(score["wins"], score["draws"], score["losses"])
    summary = {
        "opponent": opponent.name,
        "limit": f"tc {args.tc}" if args.tc else f"nodes {args.nodes}",
        "max_plies": args.max_plies,
        "games": len(games),
        "finished": sum(1 for g in games if g["result"] in ("1-0", "0-1", "1/2-1/2")),
        "adjudicated": sum(1 for g in games if g["termination"].startswith("adjudicated")),
        # Problems of the Banyan process(es): the test asserts these are all zero.
        "illegal_moves": total["illegal_moves"],
        "time_losses": total["time_losses"],
        "crashes": total["crashes"],
        "missing_bestmove": total["missing_bestmove"],
        "engine_errors": total["errors"],
        "error_samples": [s for p in banyan_players for s in p.error_samples],
        "opponent_problems": None if opponent.is_banyan else opponent.problems,
        "banyan_moves": sum(p.moves for p in banyan_players),
        "banyan_max_move_seconds": round(max(p.move_seconds_max for p in banyan_players), 3),
        "wins": score["wins"],
        "draws": score["draws"],
        "losses": score["losses"],
        "elo": elo,
        "elo_95": margin,
        "seconds": round(time.monotonic() - started, 1),
        "game_list": games,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
