#!/usr/bin/env python3
"""Checks Banyan's Syzygy support against python-chess (used by tests/syzygy.rs).

  probe --tables DIR          reads FENs on stdin, prints "<wdl> <dtz>" per line as
                              python-chess's chess.syzygy sees them ("x" where it cannot probe)
  games --tables DIR ...      plays won endings (KQvK, KRvK, KBBvK, KBNvK, KPvK; random legal
                              placements the tables call a win for the side to move) with
                              Banyan on the winning side against Stockfish, and checks that
                              every Banyan move keeps the tablebase win and every game is won.
                              Prints one JSON summary on stdout; progress goes to stderr.
"""

import argparse
import json
import random
import sys
import time

try:
    import chess
    import chess.engine
    import chess.syzygy
except ImportError:  # pragma: no cover - reported to the Rust test as a clear failure
    sys.stderr.write("syzygy.py: python-chess is not installed; run scripts/test\n")
    sys.exit(3)

MATERIALS = {
    "KQvK": [chess.QUEEN],
    "KRvK": [chess.ROOK],
    "KBBvK": [chess.BISHOP, chess.BISHOP],
    "KBNvK": [chess.BISHOP, chess.KNIGHT],
    "KPvK": [chess.PAWN],
}


def probe(args):
    with chess.syzygy.open_tablebase(args.tables) as tb:
        for line in sys.stdin:
            fen = line.strip()
            if not fen:
                continue
            board = chess.Board(fen)
            try:
                wdl = tb.probe_wdl(board)
                dtz = tb.probe_dtz(board)
                print(f"{wdl} {dtz}")
            except Exception as e:  # reported; the Rust test fails on it
                sys.stderr.write(f"{fen}: {type(e).__name__}: {e}\n")
                print("x x")
            sys.stdout.flush()


def over(board):
    """The game has ended: by the rules, a threefold repetition that happened, or 50 moves."""
    return board.is_game_over() or board.is_repetition(3) or board.halfmove_clock >= 100


def ending(board):
    if board.outcome() is not None:
        return board.outcome().termination.name
    if board.is_repetition(3):
        return "threefold repetition"
    if board.halfmove_clock >= 100:
        return "fifty-move rule"
    return "too long"


def won_placement(rng, tb, extra):
    """A random legal position with the strong side (random colour) to move and winning."""
    while True:
        strong = rng.choice([chess.WHITE, chess.BLACK])
        board = chess.Board(None)
        squares = rng.sample(chess.SQUARES, 2 + len(extra))
        board.set_piece_at(squares[0], chess.Piece(chess.KING, strong))
        board.set_piece_at(squares[1], chess.Piece(chess.KING, not strong))
        for piece, sq in zip(extra, squares[2:]):
            board.set_piece_at(sq, chess.Piece(piece, strong))
        board.turn = strong
        if not board.is_valid() or board.is_game_over():
            continue
        if tb.probe_wdl(board) == 2:
            return board


def games(args):
    rng = random.Random(args.seed)
    tb = chess.syzygy.open_tablebase(args.tables)
    banyan = chess.engine.SimpleEngine.popen_uci([args.banyan])
    banyan.configure({"SyzygyPath": args.tables, "Threads": args.threads})
    stockfish = chess.engine.SimpleEngine.popen_uci([args.stockfish])
    stockfish.configure({"SyzygyPath": args.tables, "Threads": 1, "Hash": 16})
    summary = {"games": 0, "wins": 0, "plies": 0, "failures": [], "by_material": {}}
    start = time.time()
    try:
        for name, extra in MATERIALS.items():
            won = 0
            for game_no in range(args.per_material):
                board = won_placement(rng, tb, extra)
                fen = board.fen()
                hero = board.turn
                failure = None
                game = object()
                while not over(board) and len(board.move_stack) < args.max_plies:
                    if board.turn == hero:
                        move = banyan.play(board, chess.engine.Limit(nodes=args.nodes), game=game).move
                        if move is None or move not in board.legal_moves:
                            failure = f"illegal or no move {move}"
                            break
                        board.push(move)
                        if not board.is_game_over() and tb.probe_wdl(board) != -2:
                            failure = f"{move} gave up the win (move {len(board.move_stack)})"
                            break
                    else:
                        move = stockfish.play(board, chess.engine.Limit(time=args.sf_time), game=game).move
                        board.push(move)
                outcome = board.outcome()
                if failure is None and (outcome is None or outcome.winner != hero):
                    failure = f"not won: {ending(board)}"
                summary["games"] += 1
                summary["plies"] += len(board.move_stack)
                if failure is None:
                    summary["wins"] += 1
                    won += 1
                else:
                    moves = " ".join(m.uci() for m in board.move_stack)
                    summary["failures"].append(f"{name} {fen}: {failure}; moves {moves}")
                sys.stderr.write(
                    f"{name} game {game_no + 1}: {'won' if failure is None else failure} "
                    f"in {len(board.move_stack)} plies\n"
                )
            summary["by_material"][name] = f"{won}/{args.per_material}"
    finally:
        banyan.quit()
        stockfish.quit()
        tb.close()
    summary["seconds"] = round(time.time() - start, 1)
    print(json.dumps(summary))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--tables", required=True)
    g = sub.add_parser("games")
    g.add_argument("--tables", required=True)
    g.add_argument("--banyan", required=True)
    g.add_argument("--stockfish", required=True)
    g.add_argument("--per-material", type=int, default=20)
    g.add_argument("--nodes", type=int, default=200)
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--sf-time", type=float, default=0.02)
    g.add_argument("--max-plies", type=int, default=400)
    g.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    probe(args) if args.command == "probe" else games(args)


if __name__ == "__main__":
    main()
