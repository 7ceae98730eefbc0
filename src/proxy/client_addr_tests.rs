use super::*;
use crate::proxy::request::Listener;
use tokio::io::AsyncWriteExt;

/// A v2 header built by `ppp`'s own builder.
fn v2(command: ppp::v2::Command, source: &str, destination: &str) -> Vec<u8> {
    let addrs: ppp::v2::Addresses = (
        source.parse::<SocketAddr>().unwrap(),
        destination.parse::<SocketAddr>().unwrap(),
    )
        .into();
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | command,
        ppp::v2::Protocol::Stream,
        addrs,
    )
    .build()
    .unwrap()
}

/// Feeds `bytes` to [`read_proxy_header`] `chunk` bytes at a time; the
/// header's source and what the stream reads after it.
async fn read_in_chunks(bytes: &[u8], chunk: usize) -> Result<(HeaderSource, Vec<u8>), Refused> {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        for c in bytes.chunks(chunk) {
            if client.write_all(c).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        let _ = client.shutdown().await;
    });
    let out = match read_proxy_header(server).await {
        Ok((mut s, source)) => {
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            Ok((source, rest))
        }
        Err(e) => Err(e),
    };
    writer.abort();
    out
}

#[tokio::test]
async fn headers_of_both_versions_name_the_client_and_keep_what_follows() {
    let body = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (
            b"PROXY TCP4 203.0.113.9 10.0.0.2 51000 443\r\n".to_vec(),
            Some("203.0.113.9:51000"),
        ),
        (
            b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n".to_vec(),
            Some("[2001:db8::7]:51000"),
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), None),
        (
            v2(ppp::v2::Command::Proxy, "198.51.100.4:4000", "10.0.0.2:443"),
            Some("198.51.100.4:4000"),
        ),
        (
            v2(
                ppp::v2::Command::Proxy,
                "[2001:db8::9]:4000",
                "[2001:db8::1]:443",
            ),
            Some("[2001:db8::9]:4000"),
        ),
        // LOCAL (a load balancer's health check): the TCP peer stays.
        (
            v2(ppp::v2::Command::Local, "198.51.100.4:4000", "10.0.0.2:443"),
            None,
        ),
    ];
    for (header, want) in cases {
        let mut bytes = header.clone();
        bytes.extend_from_slice(body);
        for chunk in [1, 7, bytes.len()] {
            let (source, rest) = read_in_chunks(&bytes, chunk)
                .await
                .unwrap_or_else(|e| panic!("{header:?} in chunks of {chunk}: {e}"));
            assert_eq!(source, want.map(|w| w.parse().unwrap()), "{header:?}");
            assert_eq!(rest, body, "{header:?} in chunks of {chunk}");
        }
    }
}

#[tokio::test]
async fn connections_without_a_valid_header_are_refused_with_the_reason() {
    let mut bad_version = v2(ppp::v2::Command::Proxy, "198.51.100.4:4000", "10.0.0.2:443");
    bad_version[12] = 0x31;
    let mut too_long = V2_SIGNATURE.to_vec();
    too_long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    too_long.extend(std::iter::repeat_n(0u8, MAX_PROXY_HEADER));
    let cases: Vec<(Vec<u8>, Refused)> = vec![
        (
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            Refused::Missing,
        ),
        (b"POST / HTTP/1.1\r\n\r\n".to_vec(), Refused::Missing),
        // A TLS ClientHello's first bytes.
        (vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01], Refused::Missing),
        (
            b"PROXY TCP4 not-an-ip 10.0.0.2 1 2\r\nGET /".to_vec(),
            Refused::Malformed,
        ),
        (
            b"PROXY TCP9 1.2.3.4 10.0.0.2 1 2\r\n".to_vec(),
            Refused::Malformed,
        ),
        (
            b"PROXY TCP4 1.2.3.4 10.0.0.2 99999 2\r\n".to_vec(),
            Refused::Malformed,
        ),
        (bad_version, Refused::Malformed),
        (too_long, Refused::TooLong),
        (b"PROXY UNKNOWN\rX\r\n".to_vec(), Refused::Malformed),
        (b"PROXY TCP4 1.2.3.4".to_vec(), Refused::Closed),
        (Vec::new(), Refused::Closed),
    ];
    for (bytes, want) in cases {
        let got = read_in_chunks(&bytes, 5).await.map(|(s, _)| s);
        assert_eq!(got, Err(want), "{:?}", String::from_utf8_lossy(&bytes));
    }
}

#[tokio::test]
async fn a_header_that_never_ends_times_out() {
    let (mut client, server) = tokio::io::duplex(1024);
    client.write_all(b"PROXY TCP4 1.2.3.4 ").await.unwrap();
    let limit = Duration::from_millis(50);
    let got = read_proxy_header_within(server, limit)
        .await
        .map(|(_, s)| s);
    assert_eq!(got.err(), Some(Refused::Timeout));
    drop(client);
}

fn conn() -> ConnInfo {
    ConnInfo::new("10.1.2.3:5000".parse().unwrap(), true, Listener::Tls)
}

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", v.parse().unwrap());
    }
    h
}

fn settings(hops: u32, skip: bool) -> ClientAddrSettings {
    ClientAddrSettings {
        proxy_protocol: false,
        xff_trusted_hops: hops,
        skip_xff_append: skip,
    }
}

#[test]
fn trusted_hops_pick_the_entry_that_many_from_the_right() {
    // (hops, X-Forwarded-For lines, client, X-Forwarded-For sent)
    let cases: &[(u32, &[&str], &str, Option<&str>)] = &[
        // No trusted hops: a client's claim changes nothing.
        (0, &["6.6.6.6"], "10.1.2.3", None),
        (0, &["6.6.6.6, 7.7.7.7"], "10.1.2.3", None),
        (1, &["192.0.5.1"], "192.0.5.1", Some("192.0.5.1, 10.1.2.3")),
        // The client prepended a spoofed entry; one hop trusted.
        (
            1,
            &["6.6.6.6, 192.0.5.1"],
            "192.0.5.1",
            Some("6.6.6.6, 192.0.5.1, 10.1.2.3"),
        ),
        (
            2,
            &["6.6.6.6, 192.0.5.1", "10.9.9.9"],
            "192.0.5.1",
            Some("6.6.6.6, 192.0.5.1, 10.9.9.9, 10.1.2.3"),
        ),
        (
            1,
            &["2001:db8::5"],
            "2001:db8::5",
            Some("2001:db8::5, 10.1.2.3"),
        ),
        (
            1,
            &["[2001:db8::5]:443"],
            "2001:db8::5",
            Some("[2001:db8::5]:443, 10.1.2.3"),
        ),
        (
            1,
            &["192.0.5.1:6000"],
            "192.0.5.1",
            Some("192.0.5.1:6000, 10.1.2.3"),
        ),
        // Fewer entries than trusted hops, or not an address: the peer.
        (2, &["192.0.5.1"], "10.1.2.3", Some("192.0.5.1, 10.1.2.3")),
        (1, &["unknown"], "10.1.2.3", Some("unknown, 10.1.2.3")),
        // No header at all: the peer, and the header is the peer alone.
        (1, &[], "10.1.2.3", None),
    ];
    for (hops, lines, client, sent) in cases {
        let mut c = conn();
        resolve(&settings(*hops, false), &mut c, &xff(lines));
        assert_eq!(c.client.to_string(), *client, "{hops} {lines:?}");
        assert_eq!(
            c.forwarded_for.as_ref().map(|v| v.to_str().unwrap()),
            *sent,
            "{hops} {lines:?}"
        );
    }
}

#[test]
fn skip_xff_append_forwards_the_trusted_header_as_received() {
    let mut c = conn();
    resolve(&settings(1, true), &mut c, &xff(&["6.6.6.6, 192.0.5.1"]));
    assert_eq!(c.client.to_string(), "192.0.5.1");
    assert_eq!(c.forwarded_for.unwrap(), "6.6.6.6, 192.0.5.1");
    // Without trusted hops it has nothing to keep: the client's claim goes.
    let mut c = conn();
    resolve(&settings(0, true), &mut c, &xff(&["6.6.6.6"]));
    assert_eq!(
        (c.client.to_string(), c.forwarded_for),
        ("10.1.2.3".into(), None)
    );
}

#[test]
fn the_appended_hop_is_the_proxy_protocol_client() {
    let mut c = conn();
    c.client = "203.0.113.9".parse().unwrap();
    resolve(&settings(1, false), &mut c, &xff(&["192.0.5.1"]));
    assert_eq!(c.client.to_string(), "192.0.5.1");
    assert_eq!(c.forwarded_for.unwrap(), "192.0.5.1, 203.0.113.9");
}
