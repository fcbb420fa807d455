//! A Rust node that calls a Python actor by name through `DynRef` with `Value` arguments, and
//! offers a Rust actor (`Greeter`, named `rust-greeter`) for the Python node to call back.
//! Used by `tests/test_cluster.py`.
//!
//! Usage: `rust_caller --seed ADDR --target NAME`. Prints `LISTENING <addr>`, one line per call
//! to the Python actor (`OK <value>` or `ERR <kind> <message>`), then `DONE`, and serves until
//! stdin closes.

use std::io::Write;
use std::time::Duration;

use pulsing::prelude::*;
use tokio::io::AsyncReadExt;

/// A Rust actor for Python to call.
pub struct Greeter {
    greeted: u32,
}

#[pulsing::remote]
impl Greeter {
    /// Greets `name`, `times` times.
    pub fn greet(&mut self, name: String, times: u32) -> String {
        self.greeted += 1;
        vec![format!("hello {name}"); times as usize].join(", ")
    }

    /// Counts down from `n` to 1.
    pub fn countdown(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures_util::stream::iter((1..=n).rev())
    }

    /// How many greetings so far.
    pub async fn greeted(&self) -> u32 {
        self.greeted
    }
}

fn print(line: String) {
    println!("{line}");
    std::io::stdout().flush().expect("stdout");
}

fn report(result: pulsing::Result<Value>) {
    match result {
        Ok(v) => print(format!("OK {v}")),
        Err(Error::Raised {
            kind,
            message,
            traceback,
            ..
        }) => print(format!(
            "ERR Raised {kind} {message} traceback={}",
            traceback.contains("Traceback")
        )),
        Err(e @ Error::UnknownMethod { .. }) => print(format!("ERR UnknownMethod {e}")),
        Err(e) => print(format!("ERR Other {e}")),
    }
}

#[tokio::main]
async fn main() -> pulsing::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut seeds, mut target) = (Vec::new(), String::from("pyworker"));
    while let Some(flag) = args.next() {
        let value = args.next().expect("flags take a value");
        match flag.as_str() {
            "--seed" => seeds.push(value),
            "--target" => target = value,
            other => panic!("unknown flag {other}"),
        }
    }
    let system = ActorSystem::builder()
        .addr("127.0.0.1:0")
        .seeds(seeds)
        .build()
        .await?;
    Greeter::spawn_named(&system, "rust-greeter", Greeter { greeted: 0 }).await?;
    print(format!(
        "LISTENING {}",
        system.advertised_addr().expect("a node")
    ));

    let py = system
        .resolve_dyn_wait(&target, Duration::from_secs(10))
        .await?;
    print(format!("TYPE {}", py.type_name()));
    report(py.call("process", Args::new().arg("from rust")).await);
    report(
        py.call("add", Args::new().kwarg("a", 2).kwarg("b", 40))
            .await,
    );
    report(
        py.call(
            "echo",
            Args::new().arg(Value::Map(vec![
                ("list".into(), Value::List(vec![Value::Int(1), Value::Null])),
                ("bytes".into(), Value::Bytes(vec![0, 255])),
                ("float".into(), Value::Float(1.5)),
            ])),
        )
        .await,
    );
    report(py.call("fail", Args::new().arg("rust asked")).await);
    report(py.call("nope", Args::new()).await);
    let mut items = Vec::new();
    match py.stream("count", Args::new().arg(4)).await {
        Ok(mut stream) => {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(v) => items.push(v.to_string()),
                    Err(e) => items.push(format!("error: {e}")),
                }
            }
            print(format!("STREAM {}", items.join(" ")));
        }
        Err(e) => print(format!("ERR stream {e}")),
    }
    print("DONE".into());

    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    system.shutdown().await;
    Ok(())
}
