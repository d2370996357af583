//! The front-end's state between commands: options, the current position, and the engine.

use std::ops::ControlFlow;
use std::time::Duration;

use banyan_engine::{
    Clock, Engine, EngineConfig, Event, GamePosition, GoRequest, Limits, ProcessMode,
};
use cozy_chess::Color;

use banyan_nn::builtin::Weights;
use banyan_nn::triton::client::TritonTarget;

use crate::command::{self, Command, GoParams};
use crate::format;
use crate::logging::LogTarget;
use crate::options::{Options, Value};
use crate::output::Output;

/// The engine as the GUI sees it.
pub struct Session {
    out: Output,
    log: LogTarget,
    options: Options,
    engine: Engine,
    position: GamePosition,
}

impl Session {
    pub fn new(out: Output, log: LogTarget) -> Self {
        let exe = crate::own_exe();
        Session {
            out,
            log,
            options: Options::default(),
            engine: Engine::new(exe),
            position: GamePosition::default(),
        }
    }

    /// Handles one input line; `Break` after `quit`.
    pub fn handle(&mut self, line: &str) -> ControlFlow<()> {
        match command::parse(line) {
            Command::Uci => {
                self.out
                    .line(format_args!("id name Banyan {}", env!("CARGO_PKG_VERSION")));
                self.out.line("id author The Banyan developers");
                for decl in Options::declarations() {
                    self.out.line(vampirc_uci::UciMessage::Option(decl));
                }
                self.out.line("uciok");
            }
            Command::IsReady => {
                // During a search the engine is ready by definition; otherwise start what is
                // not running, so the first `go` does not pay for it.
                if !self.engine.is_searching()
                    && let Err(e) = self.engine.ready()
                {
                    self.out.error(e);
                }
                self.out.line("readyok");
            }
            Command::SetOption { name, value } => self.set_option(&name, value.as_deref()),
            Command::UciNewGame => {
                self.engine.stop();
                self.engine.new_game();
            }
            Command::Position { fen, moves } => {
                match GamePosition::parse(fen.as_deref(), &moves, self.options.bool("UCI_Chess960"))
                {
                    Ok(position) => self.position = position,
                    Err(e) => self.out.error(format_args!("{e}; position unchanged")),
                }
            }
            Command::Go { params, problems } => {
                for problem in problems {
                    self.out.error(problem);
                }
                self.go(&params);
            }
            Command::Stop => self.engine.stop(),
            Command::PonderHit => self.engine.ponderhit(),
            Command::Quit => return ControlFlow::Break(()),
            Command::Empty | Command::Debug => {}
            Command::Unknown(why) => self.out.error(why),
        }
        ControlFlow::Continue(())
    }

    fn set_option(&mut self, name: &str, value: Option<&str>) {
        let (name, value) = match Options::parse(name, value) {
            Ok(parsed) => parsed,
            Err(why) => return self.out.error(why),
        };
        if self.engine.is_searching() {
            return self
                .out
                .error(format_args!("{name} cannot change during a search"));
        }
        if let ("LogFile", Value::Text(path)) = (name, &value)
            && let Err(e) = self.log.set_file(path)
        {
            return self
                .out
                .error(format_args!("LogFile: cannot open '{path}': {e}"));
        }
        if let ("WeightsFile", Value::Text(path)) = (name, &value)
            && Weights::parse(path).file().is_some_and(|p| !p.is_file())
        {
            return self.out.error(format_args!(
                "WeightsFile: no such file '{path}'; keeping the current evaluator"
            ));
        }
        if let ("SyzygyPath", Value::Text(paths)) = (name, &value) {
            let report = self.engine.set_syzygy_path(paths);
            for error in &report.errors {
                self.out.error(error);
            }
            if report.tables > 0 {
                self.out.info_string(format_args!(
                    "Syzygy: found {} tables, up to {} pieces",
                    report.tables, report.max_pieces
                ));
            }
            self.options.set(name, value);
            return;
        }
        let previous = self.options.clone();
        let previous_evaluator = self.engine.evaluator_description().map(str::to_string);
        self.options.set(name, value);
        let mut configured = self.engine.configure(engine_config(&self.options));
        if configured.is_ok()
            && name == "WeightsFile"
            && self.engine.evaluator_description().is_none()
        {
            // Naming the evaluator that is already configured (the default, before any search)
            // starts it now, so that the GUI hears which network it is, as for any other value.
            configured = self.engine.start_evaluator();
        }
        if let Err(e) = configured {
            self.out
                .error(format_args!("{name}: {e}; keeping the current evaluator"));
            self.options = previous;
        } else if let Some(description) = self.engine.evaluator_description()
            && (name == "WeightsFile" || Some(description) != previous_evaluator.as_deref())
        {
            // The GUI (and a test) can see which network is in use, and in what precision.
            self.out
                .info_string(format_args!("evaluator: {description}"));
        }
        if self.options.text("Backend") == "triton"
            && self.options.text("TritonUrl").trim().is_empty()
        {
            self.out.info_string(format_args!(
                "Backend triton: set TritonUrl to use it; evaluating here until then"
            ));
        }
    }

    fn go(&mut self, params: &GoParams) {
        self.engine.stop(); // Engine::go waits for a stopped search to answer
        let chess960 = self.options.bool("UCI_Chess960");
        let board = self.position.history().current().clone();
        let mut searchmoves = Vec::new();
        for text in &params.searchmoves {
            match banyan_nn::policy::parse_uci_move(&board, text, chess960) {
                Some(mv) => searchmoves.push(mv),
                None => self.out.error(format_args!(
                    "searchmoves: '{text}' is not legal here; ignored"
                )),
            }
        }
        let request = GoRequest {
            limits: limits(params, board.side_to_move()),
            searchmoves,
        };
        let out = self.out.clone();
        let show_wdl = self.options.bool("UCI_ShowWDL");
        let mut cache_hit_rate = None;
        self.engine.go(
            self.position.clone(),
            request,
            Box::new(move |event| match event {
                Event::Info(info) => {
                    cache_hit_rate = info.cache_hit_rate;
                    for line in format::info(&info, &board, chess960, show_wdl) {
                        out.line(line);
                    }
                }
                Event::Verbose(stats) => {
                    for line in format::move_stats(&stats, &board) {
                        out.line(line);
                    }
                    if let Some(rate) = cache_hit_rate {
                        out.info_string(format_args!("nncache hit rate {:.1}%", rate * 100.0));
                    }
                }
                Event::Error(e) => out.error(e),
                Event::BestMove { best, ponder } => {
                    out.line(format::bestmove(&board, best, ponder, chess960))
                }
            }),
        );
    }

    /// Ends the engine: stops any search and its processes.
    pub fn shutdown(&mut self) {
        self.engine.shutdown();
    }
}

/// The engine's configuration from the option values.
pub fn engine_config(o: &Options) -> EngineConfig {
    EngineConfig {
        threads: o.int("Threads") as u32,
        hash_mb: o.int("Hash") as u64,
        weights: Weights::parse(o.text("WeightsFile")),
        device: o.text("Backend").parse().unwrap_or_default(),
        // `Backend triton` waits for `TritonUrl` (the session says so) instead of failing.
        triton: (o.text("Backend") == "triton" && !o.text("TritonUrl").trim().is_empty()).then(
            || TritonTarget {
                urls: o.text("TritonUrl").to_string(),
                model: o.text("TritonModel").to_string(),
            },
        ),
        precision: o.text("Precision").parse().unwrap_or_default(),
        eval_threads: o.int("EvalThreads") as usize,
        minibatch: o.int("MinibatchSize") as usize,
        nncache_mb: o.int("NNCacheSize") as usize,
        policy_temperature: o.float_or_auto("PolicyTemperature").map(|t| t as f32),
        cpuct: o.float_or_auto("CPuct").map(|c| c as f32),
        cpuct_base: o.float("CPuctBase") as f32,
        cpuct_factor: o.float("CPuctFactor") as f32,
        fpu_reduction: o.float("FpuValue") as f32,
        mode: match o.text("ProcessMode") {
            "fork" => ProcessMode::Fork,
            "spawn" => ProcessMode::Spawn,
            _ => ProcessMode::platform_default(),
        },
        multipv: o.int("MultiPV") as usize,
        verbose_move_stats: o.bool("VerboseMoveStats"),
        move_overhead: Duration::from_millis(o.int("MoveOverhead") as u64),
    }
}

/// The search limits of `go`, for the side to move.
fn limits(p: &GoParams, stm: Color) -> Limits {
    let ms = |v: u64| Duration::from_millis(v.min(1 << 40));
    let (time, inc) = match stm {
        Color::White => (p.wtime, p.winc),
        Color::Black => (p.btime, p.binc),
    };
    Limits {
        nodes: p.nodes,
        depth: p.depth.map(|d| d.min(u32::MAX as u64) as u32),
        mate: p.mate.map(|m| m.min(u32::MAX as u64) as u32),
        movetime: p.movetime.map(ms),
        clock: time.map(|t| Clock {
            left: ms(t),
            increment: ms(inc.unwrap_or(0)),
            moves_to_go: p.movestogo.map(|m| m.clamp(1, u32::MAX as u64) as u32),
        }),
        // `go` with no limit at all searches until `stop`, as GUIs expect.
        infinite: p.infinite
            || (p.nodes.is_none()
                && p.depth.is_none()
                && p.mate.is_none()
                && p.movetime.is_none()
                && time.is_none()),
        ponder: p.ponder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;

    #[test]
    fn cpuct_is_the_networks_own_unless_set() {
        let cases = [
            ("<default>", None, 2.5),
            ("<builtin>", None, 2.5),
            ("<heuristic>", None, 1.745),
            ("/nets/maia-1900.pb.gz", None, 1.745),
            ("<default>", Some("1.745"), 1.745),
            ("/nets/maia-1900.pb.gz", Some("3"), 3.0),
        ];
        for (weights, cpuct, expected) in cases {
            let mut o = Options::default();
            for (name, value) in [("WeightsFile", Some(weights)), ("CPuct", cpuct)] {
                if let Some(value) = value {
                    let (name, value) = Options::parse(name, Some(value)).unwrap();
                    o.set(name, value);
                }
            }
            let got = engine_config(&o).puct().cpuct;
            assert_eq!(got, expected, "WeightsFile {weights}, CPuct {cpuct:?}");
        }
    }
}
