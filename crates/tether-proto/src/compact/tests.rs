//! Byte-exact frames, the mapping of every message of today's protocols, and property tests
//! (round trip through a connection's encoder and decoder; arbitrary bytes never panic).

use super::*;
use crate::{
    control::{Control, ErrorBody},
    file_transfer::{FileInfo, FileTransfer, PutFile},
    port_forward::{PortForward, Target, Transport},
    protocol,
    shell::{self, Shell},
};
use proptest::prelude::*;

const SID: &str = "0b6f8d3e-7d1c-4a2b-9c1e-5f3a2d4c6b7e";
const USER: &str = "4f1c2b3a-5d6e-4f70-8a9b-0c1d2e3f4a5b";

/// What the hub sends the device: the operator's message, `user_id` stamped last.
fn stamped(mut envelope: Envelope) -> Envelope {
    envelope.props.set("user_id", Value::Str(USER.into()));
    envelope
}

/// An encoder and decoder pair with the session already bound by its first frame.
fn bound() -> (Encoder, Decoder) {
    let (mut encoder, mut decoder) = (Encoder::default(), Decoder::default());
    let first = stamped(Shell::Data(b"x".to_vec()).to_envelope(SID));
    decoder.decode(&encoder.encode(&first).unwrap()).unwrap();
    (encoder, decoder)
}

fn round_trip(encoder: &mut Encoder, decoder: &mut Decoder, envelope: &Envelope) -> Vec<u8> {
    let frame = encoder.encode(envelope).unwrap();
    let back = decoder.decode(&frame).unwrap();
    assert_eq!(&back, envelope);
    assert_eq!(back.encode(), envelope.encode(), "msgpack bytes of {envelope:?}");
    frame
}

#[test]
fn a_keystroke_is_four_bytes() {
    let (mut encoder, mut decoder) = bound();
    let keystroke = stamped(Shell::Data(b"a".to_vec()).to_envelope(SID));
    // msgpack (versions 1 and 2): 128 bytes, sid and user_id in full every time.
    assert_eq!(keystroke.encode().len(), 128);
    let frame = round_trip(&mut encoder, &mut decoder, &keystroke);
    // kind shell, flags USER, handle 1, the byte.
    assert_eq!(frame, [0x01, 0x02, 0x01, b'a']);
}

#[test]
fn an_echo_carries_its_status_and_offset_as_varints() {
    let (mut device, mut hub) = (Encoder::default(), Decoder::default());
    // As the agent sends its output: `status` normal, then the stream offset.
    let mut echo = Shell::Data(b"a".to_vec()).to_envelope(SID);
    echo.props.set("status", Value::Int(shell::status::NORMAL));
    shell::set_output_offset(&mut echo, 1234);
    // msgpack: 100 bytes.
    assert_eq!(echo.encode().len(), 100);
    round_trip(&mut device, &mut hub, &echo);
    let frame = round_trip(&mut device, &mut hub, &echo);
    // kind shell, flags fields 0 (status) and 1 (offset), handle 1, status 1, offset 1234, the byte.
    assert_eq!(frame, [0x01, 0x60, 0x01, 0x01, 0xd2, 0x09, b'a']);
    // Without a status (as from a sender that leaves it out), one byte less.
    let mut bare = Shell::Data(b"a".to_vec()).to_envelope(SID);
    shell::set_output_offset(&mut bare, 1234);
    assert_eq!(
        round_trip(&mut device, &mut hub, &bare),
        [0x01, 0x40, 0x01, 0xd2, 0x09, b'a']
    );
}

#[test]
fn a_resize_is_five_bytes() {
    let (mut encoder, mut decoder) = bound();
    let resize = stamped(
        Shell::Resize {
            width: 120,
            height: 40,
        }
        .to_envelope(SID),
    );
    assert_eq!(resize.encode().len(), 154);
    let frame = round_trip(&mut encoder, &mut decoder, &resize);
    // kind resize, flags fields 0 and 1 + USER, handle 1, 120, 40.
    assert_eq!(frame, [0x02, 0x62, 0x01, 0x78, 0x28]);
}

#[test]
fn a_file_chunk_has_a_three_byte_header_and_a_varint_offset() {
    let (mut encoder, mut decoder) = bound();
    let chunk = FileTransfer::FileChunk {
        offset: 4096,
        data: b"abc".to_vec(),
        sha256: None,
    }
    .to_envelope(SID);
    assert_eq!(chunk.encode().len(), 105);
    let frame = round_trip(&mut encoder, &mut decoder, &chunk);
    assert_eq!(frame, [0x10, 0x20, 0x01, 0x80, 0x20, b'a', b'b', b'c']);
}

#[test]
fn the_first_frame_of_a_session_binds_its_handle_and_user() {
    let (mut encoder, mut decoder) = (Encoder::default(), Decoder::default());
    let new = stamped(
        Shell::New {
            user_id: None,
            width: Some(80),
            height: Some(24),
            command: None,
            local_user: None,
            status: None,
            text: vec![],
        }
        .to_envelope(SID),
    );
    assert_eq!(new.encode().len(), 151);
    let frame = round_trip(&mut encoder, &mut decoder, &new);
    let mut expected = vec![0x03, 0xc3, 0x01, 36];
    expected.extend_from_slice(SID.as_bytes());
    expected.push(36);
    expected.extend_from_slice(USER.as_bytes());
    // Presence of fields 3 and 4 (none), then terminal_width 80 and terminal_height 24.
    expected.extend_from_slice(&[0x00, 0x50, 0x18]);
    assert_eq!(frame, expected);
    assert_eq!(frame.len(), 80);
    // The next message of the session names it by its handle alone.
    let again = round_trip(&mut encoder, &mut decoder, &new);
    assert_eq!(again, [0x03, 0xc2, 0x01, 0x00, 0x50, 0x18]);
}

#[test]
fn a_control_open_keeps_its_msgpack_body() {
    let mut open = Control::Open {
        versions: vec![1, 2, 3],
    }
    .to_envelope(SID);
    open.props.set("user_name", Value::Str("ana".into()));
    let (mut encoder, mut decoder) = (Encoder::default(), Decoder::default());
    let frame = round_trip(&mut encoder, &mut decoder, &open);
    let mut expected = vec![0x70, 0x21, 0x01, 36];
    expected.extend_from_slice(SID.as_bytes());
    expected.extend_from_slice(&[0x00, 0x03, b'a', b'n', b'a']);
    expected.extend_from_slice(&open.body);
    assert_eq!(frame, expected);
    assert_eq!((open.encode().len(), frame.len()), (108, 59));
}

fn every_message() -> Vec<Envelope> {
    let info = FileInfo {
        path: "/data/a".into(),
        size: 5,
        uid: 1,
        gid: 2,
        mode: 0o644,
        modtime: (1_700_000_000, 7),
    };
    let mut all: Vec<Envelope> = [
        Control::Open {
            versions: vec![1, 2, 3],
        },
        Control::Accept {
            version: 3,
            protocols: vec![1, 2, 3],
        },
        Control::Ping,
        Control::Pong,
        Control::Wait {
            reason: "consent".into(),
            timeout_secs: 60,
        },
        Control::Error(ErrorBody {
            err: "no".into(),
            close: true,
            code: Some(1100),
            msgproto: Some(2),
            ..Default::default()
        }),
        Control::Sessions {
            sids: vec!["a".into()],
        },
        Control::Inventory(Default::default()),
    ]
    .iter()
    .map(|message| message.to_envelope(SID))
    .collect();
    let shells = [
        Shell::New {
            user_id: Some(USER.into()),
            width: Some(80),
            height: Some(24),
            command: Some("id".into()),
            local_user: None,
            status: Some(1),
            text: b"Shell started".to_vec(),
        },
        Shell::Data(vec![0, 255, 10]),
        Shell::Resize {
            width: 300,
            height: 65_535,
        },
        Shell::Stop {
            user_id: Some(USER.into()),
            status: Some(2),
            text: b"user disconnected".to_vec(),
            exit_status: Some(130),
        },
        Shell::Ping { timeout: Some(65) },
        Shell::Pong,
        Shell::Resume { offset: 1 << 40 },
        Shell::Detach,
    ];
    for message in shells {
        all.push(message.to_envelope(SID));
        all.push(stamped(message.to_envelope(SID)));
    }
    let files = [
        FileTransfer::Stat { path: "/a".into() },
        FileTransfer::FileInfo(info.clone()),
        FileTransfer::GetFile {
            path: "/a".into(),
            offset: Some(4096),
        },
        FileTransfer::PutFile(PutFile {
            path: "/a".into(),
            size: Some(9),
            upload_id: Some("u".into()),
            ..Default::default()
        }),
        FileTransfer::FileChunk {
            offset: 1 << 33,
            data: vec![7; 300],
            sha256: None,
        },
        FileTransfer::FileChunk {
            offset: 9,
            data: vec![],
            sha256: Some("ab".repeat(32)),
        },
        FileTransfer::Ack { offset: 9 },
        FileTransfer::Error(ErrorBody::new("nope")),
        FileTransfer::List { path: "/".into() },
        FileTransfer::FileList {
            path: "/".into(),
            entries: vec![info],
        },
        FileTransfer::Mkdir {
            path: "/d".into(),
            mode: Some(0o755),
        },
    ];
    all.extend(files.iter().map(|message| message.to_envelope(SID)));
    let connection_id = "c1".to_owned();
    let forwards = [
        PortForward::New {
            connection_id: connection_id.clone(),
            target: Some(Target {
                host: "127.0.0.1".into(),
                port: 22,
                transport: Transport::Tcp,
            }),
            window: None,
        },
        PortForward::New {
            connection_id: connection_id.clone(),
            target: None,
            window: None,
        },
        PortForward::Forward {
            connection_id: connection_id.clone(),
            data: vec![1, 2, 3],
        },
        PortForward::Ack {
            connection_id: connection_id.clone(),
        },
        PortForward::Stop {
            connection_id: connection_id.clone(),
        },
        PortForward::Error {
            connection_id,
            body: ErrorBody::new("refused"),
        },
    ];
    all.extend(forwards.iter().map(|message| message.to_envelope(SID)));
    for typ in ["check-update", "send-inventory"] {
        all.push(Envelope::new(protocol::COMMANDS, typ, SID));
        all.push(
            Envelope::new(protocol::COMMANDS, typ, SID)
                .with_prop("status", Value::Int(2))
                .with_body(b"failed".to_vec()),
        );
    }
    all.push(Control::Sessions { sids: vec![] }.to_envelope(""));
    all.push(Control::Close.to_envelope(SID));
    all
}

#[test]
fn every_message_of_todays_protocols_maps_to_a_kind_and_back() {
    let (mut encoder, mut decoder) = (Encoder::default(), Decoder::default());
    let mut total = (0, 0);
    for envelope in every_message() {
        let frame = round_trip(&mut encoder, &mut decoder, &envelope);
        assert_ne!(frame[0], kind::GENERIC, "{envelope:?}");
        assert_eq!(frame[1] & flag::EXTRA, 0, "a prop left over in {envelope:?}");
        total = (total.0 + envelope.encode().len(), total.1 + frame.len());
    }
    // The close released the session's handle.
    assert_eq!(encoder.sessions(), 0);
    assert_eq!(decoder.sid(1), None);
    eprintln!("every message: {} bytes in msgpack, {} compact", total.0, total.1);
}

#[test]
fn unknown_messages_and_odd_props_still_travel() {
    let (mut encoder, mut decoder) = bound();
    let extension = Envelope::new(9, "inventory", SID)
        .with_prop("x", Value::Array(vec![Value::Nil]))
        .with_body(b"{}".to_vec());
    let frame = round_trip(&mut encoder, &mut decoder, &extension);
    assert_eq!(frame[..3], [kind::GENERIC, 0x00, 0x01]);
    let odd = [
        // An offset of the wrong width, a negative one, a prop out of order, a duplicate.
        Envelope::new(protocol::SHELL, "shell", SID).with_prop("offset", Value::Int64(5)),
        Envelope::new(protocol::SHELL, "shell", SID).with_prop("offset", Value::Int(-1)),
        Envelope::new(protocol::SHELL, "resize", SID)
            .with_prop("terminal_height", Value::Int(1))
            .with_prop("terminal_width", Value::Int(2)),
        Envelope {
            props: Props(vec![
                ("offset".into(), Value::Int(1)),
                ("offset".into(), Value::Int(2)),
            ]),
            ..Envelope::new(protocol::SHELL, "shell", SID)
        },
        // Another user than the session's: the binding is announced again.
        Envelope::new(protocol::SHELL, "shell", SID).with_prop("user_id", Value::Str("other".into())),
        // A user on the empty sid stays a prop.
        Envelope::new(protocol::CONTROL, "ping", "").with_prop("user_id", Value::Str(USER.into())),
        Envelope::new(protocol::SHELL, "", SID),
    ];
    for envelope in odd {
        round_trip(&mut encoder, &mut decoder, &envelope);
    }
}

#[test]
fn a_relay_rewrites_the_header_and_copies_the_payload() {
    let (mut device, mut hub) = (Encoder::default(), Decoder::default());
    let mut echo = Shell::Data(b"hello".to_vec()).to_envelope(SID);
    shell::set_output_offset(&mut echo, 7);
    let frame = device.encode(&echo).unwrap();
    let (header, payload_at) = Header::parse(&frame).unwrap();
    assert_eq!(hub.decode(&frame).unwrap(), echo);
    // The operator's leg names the session by handle 5 and binds it itself.
    let rewritten = Header {
        handle: 5,
        binding: Some(Binding { sid: SID, user: "" }),
        ..header
    };
    let mut out = Vec::new();
    rewritten.write(&mut out);
    out.extend_from_slice(&frame[payload_at..]);
    assert_eq!(Decoder::default().decode(&out).unwrap(), echo);
}

#[test]
fn broken_frames_are_errors_with_reasons() {
    let (_, mut decoder) = bound();
    let cases: [(&[u8], Error); 10] = [
        (&[], Error::Truncated("kind")),
        (&[0x81, 0xa3], Error::NotCompact(0x81)),
        (&[0x01], Error::Truncated("flags")),
        (&[0x01, 0x00, 0x09], Error::UnknownHandle(9)),
        (
            &[0x01, 0x10, 0x01],
            Error::FlagsNotAllowed {
                kind: 0x01,
                flags: 0x10,
            },
        ),
        (&[0x01, 0x08, 0x01], Error::CompressionNotNegotiated),
        (&[0x60, 0x00, 0x01], Error::UnknownKind(0x60)),
        (
            &[0x01, 0x01, 0x02, 0xff, 0xff, 0x03],
            Error::TooLong {
                what: "sid",
                length: 0xffff,
                remaining: 0,
            },
        ),
        (&[0x01, 0x02, 0x00], Error::NoUser(0)),
        (
            &[0x01, 0x01, 0x80, 0x10, 0x01, b's', 0x00],
            Error::HandleOutOfRange {
                handle: 2048,
                limit: MAX_SESSIONS,
            },
        ),
    ];
    for (frame, error) in cases {
        assert_eq!(decoder.decode(frame), Err(error), "{frame:02x?}");
    }
    assert_eq!(
        decoder.decode(&[0x08, 0x20, 0x01]),
        Err(Error::FlagsNotAllowed {
            kind: 0x08,
            flags: 0x20
        })
    );
    let message = decoder
        .decode(&[0x03, 0x01, 0x05, 0x01, b's'])
        .unwrap_err()
        .to_string();
    assert_eq!(message, "compact frame truncated in its user");
    // A failed frame leaves the table as it was: the session is still bound.
    assert_eq!(decoder.sid(1), Some(SID));
}

#[test]
fn an_encoder_refuses_sessions_beyond_its_limit() {
    let mut encoder = Encoder::new(1);
    encoder.encode(&Shell::Detach.to_envelope("a")).unwrap();
    let refused = encoder.encode(&Shell::Detach.to_envelope("b"));
    assert_eq!(refused, Err(Error::TooManySessions(1)));
    encoder.encode(&Control::Close.to_envelope("a")).unwrap();
    assert_eq!(
        encoder.encode(&Shell::Detach.to_envelope("b")).unwrap()[..3],
        [0x08, 0x01, 0x01]
    );
}

#[test]
fn versions_are_chosen_highest_first() {
    assert_eq!(choose_version(&[1, 2, 3], &[1, 2, 3]), Some(3));
    assert_eq!(choose_version(&[1, 2], &[1, 2, 3]), Some(2));
    assert_eq!(choose_version(&[1, 2, 3], &[1]), Some(1));
    assert_eq!(choose_version(&[4], &[1, 2, 3]), None);
    assert!(is_compact(&[0x01]) && !is_compact(&[0x82]) && !is_compact(&[]));
}

fn prop_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (0i64..70_000).prop_map(Value::Int),
        (0i64..1 << 40).prop_map(Value::Int64),
        any::<i64>().prop_map(Value::Int64),
        any::<u64>().prop_map(Value::UInt),
        any::<u16>().prop_map(Value::UInt16),
        any::<u32>().prop_map(Value::UInt32),
        ".{0,12}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bin),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        proptest::collection::vec(("[a-z]{1,6}", inner), 0..4).prop_map(Value::Map)
    })
}

fn prop_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "offset",
            "terminal_width",
            "terminal_height",
            "user_id",
            "status",
            "command",
            "sha256",
            "connection_id",
            "user_name",
            "exit_status",
            "timeout",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ]
}

fn prop_envelope() -> impl Strategy<Value = Envelope> {
    let known = kind::KINDS
        .iter()
        .map(|kind| (kind.proto, kind.typ.to_owned()))
        .collect::<Vec<_>>();
    let message = prop_oneof![
        4 => prop::sample::select(known),
        1 => (any::<u16>(), "[a-z-]{0,8}"),
    ];
    let sid = prop::sample::select(vec!["", "a", "b", SID]).prop_map(str::to_owned);
    let user = prop::sample::select(vec!["", "u", USER]);
    let props = proptest::collection::vec((prop_key(), prop_value()), 0..5);
    let body = proptest::collection::vec(any::<u8>(), 0..40);
    (message, sid, props, user, body).prop_map(|((proto, typ), sid, props, user, body)| {
        let mut envelope = Envelope {
            proto,
            typ,
            sid,
            props: Props(props),
            body,
        };
        if !user.is_empty() {
            envelope.props.0.push(("user_id".into(), Value::Str(user.into())));
        }
        envelope
    })
}

proptest! {
    /// A connection's worth of messages (sessions bound, re-stamped, closed and bound again)
    /// comes out as it went in, down to the msgpack bytes.
    #[test]
    fn messages_round_trip_through_a_connection(
        envelopes in proptest::collection::vec(prop_envelope(), 1..24)
    ) {
        let (mut encoder, mut decoder) = (Encoder::new(8), Decoder::new(8));
        for envelope in &envelopes {
            let frame = encoder.encode(envelope).unwrap();
            prop_assert!(is_compact(&frame));
            let back = decoder.decode(&frame);
            prop_assert_eq!(back.as_ref(), Ok(envelope));
            prop_assert_eq!(back.unwrap().encode(), envelope.encode());
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..64)) {
        let (_, mut decoder) = bound();
        let _ = decoder.decode(&frame);
        let _ = Header::parse(&frame);
    }

    /// Valid frames with one byte changed reach deeper into the decoder than random bytes.
    #[test]
    fn decoding_damaged_frames_never_panics(
        envelope in prop_envelope(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut encoder = Encoder::default();
        let mut frame = encoder.encode(&envelope).unwrap();
        let index = at.index(frame.len());
        frame[index] = byte;
        let _ = Decoder::default().decode(&frame);
        frame.truncate(index);
        let _ = Decoder::default().decode(&frame);
    }

    /// Output of two sessions, interleaved, text and noise of any size, through a device's link
    /// that looks one message ahead (deflate streams across frames) and a hub's link: every
    /// message arrives as it was sent, and damaging a compressed frame is an error, not a panic.
    #[test]
    fn compressed_output_round_trips_through_linked_ends(
        outputs in proptest::collection::vec((any::<bool>(), any::<bool>(), 0..3000usize, any::<u8>()), 1..16),
        damage in any::<prop::sample::Index>(),
    ) {
        let (mut device, mut hub) = (link::Link::new(), link::Link::new());
        hub.accept_compressed(1 << 20);
        for sid in ["s", "t"] {
            let mut open = Control::Open { versions: vec![3] }.to_envelope(sid);
            open.props.set(link::COMPRESSION_PROP, Value::Str(link::DEFLATE.into()));
            device.decode(&hub.encode(&open)).unwrap();
            let accept = Control::Accept { version: 3, protocols: vec![protocol::SHELL] };
            hub.decode(&device.encode(&accept.to_envelope(sid))).unwrap();
        }
        let envelopes: Vec<Envelope> = outputs
            .iter()
            .map(|&(second, noise, length, seed)| {
                let mut state = u32::from(seed) | 1;
                let body: Vec<u8> = (0..length)
                    .map(|index| match noise {
                        true => {
                            state ^= state << 13;
                            state ^= state >> 17;
                            state ^= state << 5;
                            state as u8
                        }
                        false => b"log line ok\n"[index % 12],
                    })
                    .collect();
                Shell::Data(body).to_envelope(if second { "t" } else { "s" })
            })
            .collect();
        let mut frames = Vec::new();
        for (index, envelope) in envelopes.iter().enumerate() {
            let mut frame = Vec::new();
            device.encode_followed_into(envelope, envelopes.get(index + 1), &mut frame);
            let back = hub.decode(&frame);
            prop_assert_eq!(back.as_ref(), Ok(envelope));
            frames.push(frame);
        }
        let mut hub = link::Link::new();
        hub.accept_compressed(1 << 20);
        for frame in &mut frames {
            let index = damage.index(frame.len());
            frame[index] ^= 0x5a;
            let _ = hub.decode(frame);
        }
    }
}
