//! A short seeded fuzz of what a node decodes from the network, on stable, in every test run:
//! the stable counterpart of the cargo-fuzz targets `frame_decode` and `call_args`
//! (`fuzz/`, see its README), run on a thread with a runtime worker's stack.
//!
//! - Received messages: every seed of the committed seeds (`fuzz/seeds/frame_decode`, packed
//!   frames written from the proptest strategies by `write_the_corpus`) and a few thousand
//!   deterministic mutations of them go through the reader's own decoder
//!   (`pulsing::__fuzz::decode_message`): an error or frames that round-trip, never a panic or a
//!   stack overflow.
//! - Generated argument decoding: random postcard bytes and random `Value` arguments for every
//!   method of a `#[pulsing::remote]` actor with many parameter shapes
//!   (`pulsing::__fuzz::build_calls`): a typed error or a call, never a panic.
#![allow(missing_docs)]

mod support;

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use pulsing::__fuzz::{build_calls, decode_message, on_runtime_stack};
use pulsing::prelude::*;
use support::frames::{frame, value};
use support::shapes::{self, Shapes};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/frame_decode")
}

fn corpus() -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("the corpus is committed")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// A cheap deterministic generator (xorshift), so every run mutates the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `seed`, as libFuzzer's simplest ones: a bit flipped, a byte set to an edge
/// value, a cut, a range repeated, a splice with another seed.
fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    if bytes.is_empty() {
        return other.to_vec();
    }
    for _ in 0..=rng.below(3) {
        let at = rng.below(bytes.len());
        match rng.below(5) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => bytes.truncate(at.max(1)),
            3 => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                let range = bytes[at..end].to_vec();
                for _ in 0..=rng.below(64) {
                    bytes.splice(at..at, range.iter().copied());
                }
            }
            _ => {
                let from = rng.below(other.len());
                bytes.truncate(at);
                bytes.extend_from_slice(&other[from..]);
            }
        }
        if bytes.is_empty() {
            bytes.push(0);
        }
    }
    bytes
}

#[test]
fn the_corpus_and_its_mutations_decode_or_fail_cleanly() {
    let seeds = corpus();
    assert!(seeds.len() >= 32, "the corpus has {} seeds", seeds.len());
    let decoded = on_runtime_stack(move || {
        let mut rng = Rng(0x5eed);
        let mut decoded = 0;
        for (i, seed) in seeds.iter().enumerate() {
            // Each seed decodes whole: it was written by the encoder.
            assert!(decode_message(seed).is_ok(), "seed {i} does not decode");
            let other = &seeds[(i + 1) % seeds.len()];
            for _ in 0..100 {
                decoded += usize::from(decode_message(&mutate(seed, other, &mut rng)).is_ok());
            }
        }
        decoded
    });
    // Some mutations still decode (a flipped bit in a string or a number): the checks reached
    // past the first byte.
    assert!(decoded > 0);
}

/// Writes the corpus from the strategies (run by hand: `cargo test -p pulsing --test wire_fuzz
/// -- --ignored`), then commit `fuzz/seeds/frame_decode`.
#[test]
#[ignore]
fn write_the_corpus() {
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(7),
        failure_persistence: None,
        ..Config::default()
    });
    let message = proptest::collection::vec(frame(), 1..5);
    for i in 0..48 {
        let frames = message.new_tree(&mut runner).unwrap().current();
        let bytes: Vec<u8> = frames
            .iter()
            .filter_map(|f| pulsing::wire::try_encode(f).ok())
            .flatten()
            .collect();
        std::fs::write(corpus_dir().join(format!("seed-{i:02}")), bytes).unwrap();
    }
}

#[test]
fn generated_argument_decoding_never_panics() {
    let methods = shapes::METHODS;
    let failures = on_runtime_stack(move || {
        let input = (
            proptest::sample::select(methods.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..48),
            proptest::collection::vec(value(), 0..6),
        );
        let mut runner = TestRunner::new(Config {
            cases: 3000,
            rng_seed: RngSeed::Fixed(3),
            failure_persistence: None,
            ..Config::default()
        });
        let failures = std::cell::Cell::new(0u32);
        runner
            .run(&input, |(method, bytes, values)| {
                let refused = build_calls::<Shapes>(method, &bytes, Args::from(values)).is_err();
                failures.set(failures.get() + u32::from(refused));
                Ok(())
            })
            .unwrap();
        failures.get()
    });
    // Random input is nearly always refused, with a typed error.
    assert!(failures > 2000, "{failures}");
}
