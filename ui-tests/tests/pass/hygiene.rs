//! The generated code names everything by absolute path: it compiles without the prelude and
//! with common std names shadowed by the user's own items.
#![no_implicit_prelude]
#![allow(dead_code, non_camel_case_types)]

extern crate futures_util;
extern crate pulsing;

use ::pulsing::prelude::Stream;

// User items that shadow the names a careless expansion would use.
struct Result;
struct Option;
struct Some;
struct None;
struct Ok;
struct Err;
struct Box;
struct String;
struct Vec;
struct Clone;
struct Debug;
struct Deref;
struct From;
struct Into;
struct Future;
struct Duration;
struct ActorRef;
struct ActorSystem;
struct Actor;
struct Interface;
struct __Message;
struct INTERFACE;
type Send = ();
type Sync = ();
type usize = ();
type bool = ();
type str = ();
mod core {}
mod std {}

pub struct Counter {
    value: i64,
    started: ::core::primitive::bool,
}

#[pulsing::remote]
impl Counter {
    /// Sync.
    pub fn inc(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }

    /// Async.
    pub async fn get(&self) -> i64 {
        self.value
    }

    /// `Result`-returning, with the real `Result` spelled out.
    pub fn check(&self, limit: i64) -> ::std::result::Result<i64, ::std::string::String> {
        if self.value > limit {
            ::std::result::Result::Err(::std::format!("{} > {limit}", self.value))
        } else {
            ::std::result::Result::Ok(self.value)
        }
    }

    /// Owned arguments of std types.
    pub fn join(&self, parts: ::std::vec::Vec<::std::string::String>) -> ::std::string::String {
        parts.concat()
    }

    /// Streaming.
    pub fn count_to(&self, n: u32) -> impl Stream<Item = u32> + ::core::marker::Send + 'static {
        futures_util::stream::iter(1..=n)
    }

    /// Async streaming.
    pub async fn later(&self, n: u32) -> impl Stream<Item = u32> + ::core::marker::Send + 'static {
        futures_util::stream::iter(0..n)
    }

    #[on_start]
    fn start(&mut self) {
        self.started = true;
    }

    #[on_stop]
    async fn stop(&mut self) {
        self.started = false;
    }
}

fn main() {}
