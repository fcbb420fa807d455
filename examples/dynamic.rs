//! A dynamic, by-name call: the bridge other languages use. No proxy type, just a name, a method
//! name and `Value` arguments; mistakes get errors that name the expected signature.
//!
//! Run: `cargo run -p pulsing-examples --example dynamic`

use pulsing::prelude::*;
use serde::{Deserialize, Serialize};

/// An order line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    item: String,
    quantity: u32,
    unit_price: f64,
}

/// Prices orders.
pub struct Pricer {
    discount: f64,
}

#[pulsing::remote]
impl Pricer {
    /// The total of `lines`, after the discount, with an optional coupon.
    pub fn total(&self, lines: Vec<Line>, coupon: Option<String>) -> f64 {
        let sum = lines
            .iter()
            .fold(0.0, |acc, l| acc + l.quantity as f64 * l.unit_price);
        let coupon = if coupon.as_deref() == Some("ONE-OFF") {
            1.0
        } else {
            0.0
        };
        (sum * (1.0 - self.discount) - coupon).max(0.0)
    }

    /// The prices of one item for 1..=n units.
    pub fn table(&self, unit_price: f64, n: u32) -> impl Stream<Item = f64> + Send + 'static {
        let discount = self.discount;
        futures_util::stream::iter((1..=n).map(move |q| q as f64 * unit_price * (1.0 - discount)))
    }
}

#[tokio::main]
async fn main() -> pulsing::Result<()> {
    let system = ActorSystem::builder().build().await?;
    Pricer::spawn_named(&system, "pricer", Pricer { discount: 0.25 }).await?;

    // Only the name is known here: no Rust type.
    let pricer = system.resolve_dyn("pricer").await?;
    let interface = pricer
        .interface()
        .expect("a local actor's interface is at hand");
    for method in interface.methods {
        println!("{} offers {}", interface.actor, method.signature());
    }

    let line = Value::Map(vec![
        ("item".into(), "tea".into()),
        ("quantity".into(), 4.into()),
        ("unit_price".into(), 2.5.into()),
    ]);
    let total = pricer
        .call(
            "total",
            Args::new()
                .arg(Value::List(vec![line]))
                .kwarg("coupon", "ONE-OFF"),
        )
        .await?;
    println!("total(lines=[4 x tea @ 2.5], coupon=\"ONE-OFF\") = {total}");
    let total = pricer.call("total", vec![Value::List(vec![])]).await?;
    println!("total(lines=[]) = {total}   (an Option parameter may be left out)");

    let table: Vec<String> = pricer
        .stream("table", Args::new().kwarg("unit_price", 2.0).kwarg("n", 3))
        .await?
        .map(|item| item.expect("item").to_string())
        .collect()
        .await;
    println!("table(unit_price=2.0, n=3) = [{}]", table.join(", "));

    let mistake = pricer
        .call("total", Args::new().arg("not a list"))
        .await
        .unwrap_err();
    println!("a wrong call says: {mistake}");

    system.shutdown().await;
    Ok(())
}
