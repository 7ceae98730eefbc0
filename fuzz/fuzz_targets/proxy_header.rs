//! The PROXY protocol reader (`use_proxy_protocol`) against `ppp` read on
//! the whole input. The reader sees a connection's bytes as they arrive, a
//! prefix at a time (the first input byte picks the step); it never panics,
//! a header it accepts is the one `ppp` reads from the whole input (same
//! length, same client), and a header `ppp` reads from the whole input
//! (within the size limit) is accepted whatever steps the bytes arrive in.
#![no_main]

use jetbridge::proxy::client_addr::{HeaderSource, MAX_PROXY_HEADER, Parse, parse};
use libfuzzer_sys::fuzz_target;

/// The header `ppp` reads at the start of `data`: its length and the client
/// it names (`None`: a v2 `LOCAL`, v1 `UNKNOWN`, or a non-IP v2 family). A
/// v1 line counts only when it ends with `\r\n`, as the protocol says
/// (`ppp` lets an `UNKNOWN` line end without it).
fn ppp_reads(data: &[u8]) -> Option<(usize, HeaderSource)> {
    match ppp::HeaderResult::parse(data) {
        ppp::HeaderResult::V1(Ok(h)) if !h.header.ends_with("\r\n") => None,
        ppp::HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
                ppp::v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
                ppp::v1::Addresses::Unknown => None,
            };
            Some((h.header.len(), source))
        }
        ppp::HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => Some((a.source_address, a.source_port).into()),
                (_, ppp::v2::Addresses::IPv6(a)) => Some((a.source_address, a.source_port).into()),
                _ => None,
            };
            Some((h.len(), source))
        }
        _ => None,
    }
}

/// The reader's verdict on `data` arriving `step` bytes at a time.
fn arriving(data: &[u8], step: usize) -> Parse {
    let end = data.len().min(MAX_PROXY_HEADER);
    let mut k = 0;
    while k < end {
        k = (k + step).min(end);
        match parse(&data[..k]) {
            Parse::More => continue,
            verdict => return verdict,
        }
    }
    Parse::More
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, data)) = input.split_first() else {
        return;
    };
    let step = usize::from(first % 16) + 1;
    let verdict = arriving(data, step);
    let whole = ppp_reads(data);
    if let Parse::Done(len, source) = verdict {
        assert_eq!(whole, Some((len, source)), "accepted what ppp does not read");
        assert!(len <= data.len());
    }
    if let Some((len, source)) = whole
        && len <= MAX_PROXY_HEADER
    {
        assert_eq!(verdict, Parse::Done(len, source), "refused what ppp reads");
    }
});
