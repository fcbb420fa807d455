//! Proptest strategies for wire frames aimed at the support actors (few ids, so repeats are
//! likely; known and unknown actors and methods), shared by the fuzz-like tests.

use proptest::prelude::*;
use pulsing::prelude::*;
use pulsing::wire::{Frame, NodeId, Payload};

pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Int),
        ".{0,6}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::bytes),
    ];
    leaf.prop_recursive(4, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::vec((inner.clone(), inner), 0..3).prop_map(Value::Map),
        ]
    })
}

pub fn frame() -> impl Strategy<Value = Frame> {
    let actor = prop_oneof![Just("counter"), Just("producer"), Just("nobody")];
    let method = prop_oneof![
        Just("inc"),
        Just("get"),
        Just("count_to"),
        Just("endless"),
        Just("fails_after"),
        Just("$describe"),
        Just("nope"),
    ];
    let id = 0..8u64; // few ids: repeats are likely
    let args = prop_oneof![
        proptest::collection::vec(value(), 0..3).prop_map(|v| Payload::Dynamic(Args::from(v))),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| Payload::Typed(b.into())),
        value().prop_map(Payload::Value),
    ];
    prop_oneof![
        4 => (id.clone(), actor, method, args, proptest::option::of(prop_oneof![0..4u32, Just(u32::MAX)]))
            .prop_map(|(id, actor, method, args, credit)| Frame::Request {
                id,
                actor: actor.into(),
                actor_id: None,
                expect_type: None,
                method: method.into(),
                args,
                credit,
                deadline_ms: None,
            }),
        2 => (id.clone(), prop_oneof![1..4u32, Just(u32::MAX)]).prop_map(|(id, items)| Frame::Credit { id, items }),
        1 => id.clone().prop_map(|id| Frame::Cancel { id }),
        1 => (id.clone(), proptest::collection::vec(value().prop_map(Payload::Value), 0..4))
            .prop_map(|(id, items)| Frame::StreamItems { id, items }),
        1 => (id.clone(), value()).prop_map(|(id, v)| Frame::Response { id, result: Ok(Payload::Value(v)) }),
        1 => id.prop_map(|id| Frame::StreamEnd { id, error: None }),
        1 => proptest::collection::vec(any::<u8>(), 0..32).prop_map(Frame::Gossip),
        1 => Just(Frame::Hello { version: 3, node: NodeId(1), addr: "x".into(), nonce: [0; 32] }),
        1 => Just(Frame::Leaving),
    ]
}
