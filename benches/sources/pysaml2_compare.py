#!/usr/bin/env python3
"""Times pysaml2 on the SAML response that benches/sources.rs verifies, for the comparison in
BENCHMARKS.md (section "sources").

The response, the IdP metadata and certificate and the service provider's names are read from
the files the Rust benchmark writes (saml.json and the files it names). pysaml2 is configured as
a service provider with the same entity id and ACS, the same IdP metadata, signed responses and
signed assertions required, and the same clock skew idsync allows (120 s); the base64 response
is then parsed with Saml2Client.parse_authn_request_response, answering the one outstanding
request, which verifies both signatures, the status, the destination, the audience, the
subject confirmation and the conditions against the clock.

pysaml2's default crypto backend runs the xmlsec1 command for each signature it checks; the time
spent in those commands is measured as well, so the report can say how much of pysaml2's figure
is process start-up and xmlsec1 and how much is pysaml2's own work.

Usage: pysaml2_compare.py --fixtures DIR [--iterations N] [--warmup N] [--out FILE]
Prints a summary; --out writes the figures as JSON (times in nanoseconds).
"""

import argparse
import base64
import json
import logging
import pathlib
import platform
import shutil
import statistics
import sys
import time
from importlib.metadata import version

from saml2 import BINDING_HTTP_POST, sigver
from saml2.client import Saml2Client
from saml2.config import SPConfig


class XmlsecTimer:
    """Wraps the xmlsec1 backend's command runner to count the commands and their wall time."""

    def __init__(self):
        self.calls = 0
        self.ns = 0
        self._original = sigver.CryptoBackendXmlSec1._run_xmlsec
        timer = self

        def timed(backend, com_list, extra_args):
            start = time.perf_counter_ns()
            try:
                return timer._original(backend, com_list, extra_args)
            finally:
                timer.ns += time.perf_counter_ns() - start
                timer.calls += 1

        sigver.CryptoBackendXmlSec1._run_xmlsec = timed

    def reset(self):
        self.calls = 0
        self.ns = 0


def sp_client(fixtures: pathlib.Path, manifest: dict, xmlsec: str) -> Saml2Client:
    config = SPConfig()
    config.load(
        {
            "entityid": manifest["sp_entity_id"],
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(manifest["acs_url"], BINDING_HTTP_POST)],
                    },
                    "want_response_signed": True,
                    "want_assertions_signed": True,
                    "allow_unsolicited": False,
                    "allow_unknown_attributes": True,
                },
            },
            "metadata": {"local": [str(fixtures / manifest["metadata_file"])]},
            "xmlsec_binary": xmlsec,
            "accepted_time_diff": 120,
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config)


def parse(client: Saml2Client, encoded: str, request_id: str):
    response = client.parse_authn_request_response(
        encoded, BINDING_HTTP_POST, outstanding={request_id: "/"}
    )
    if response is None:
        raise SystemExit("pysaml2 returned no response: the response was refused")
    return response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", required=True, type=pathlib.Path)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()

    # pysaml2 logs every refusal and much else; only errors matter here.
    logging.basicConfig(level=logging.ERROR)

    manifest = json.loads((args.fixtures / "saml.json").read_text())
    encoded = (args.fixtures / manifest["response_file"]).read_text().strip()
    xmlsec = shutil.which("xmlsec1")
    if not xmlsec:
        raise SystemExit("xmlsec1 is not installed (Debian package xmlsec1)")
    now = time.time()
    if now >= manifest["not_on_or_after"] - 60:
        raise SystemExit(
            "the response in the fixtures has expired (or is about to): re-run cargo bench --bench sources"
        )

    timer = XmlsecTimer()
    client = sp_client(args.fixtures, manifest, xmlsec)

    # Checked once before timing: the right identity and groups, both signatures verified.
    response = parse(client, encoded, manifest["request_id"])
    name_id = response.name_id.text if response.name_id is not None else None
    if name_id != manifest["name_id"]:
        raise SystemExit(f"pysaml2 read NameID {name_id!r}, not {manifest['name_id']!r}")
    groups = response.ava.get(manifest["group_attribute"])
    if groups != manifest["groups"]:
        raise SystemExit(f"pysaml2 read groups {groups!r}, not {manifest['groups']!r}")
    if timer.calls < 2:
        raise SystemExit(f"pysaml2 ran xmlsec1 {timer.calls} time(s); both signatures must be checked")
    # An altered response must be refused, so the timed path is one that verifies.
    altered = base64.b64encode(
        base64.b64decode(encoded).replace(b"vpn-users", b"vpn-admins")
    ).decode()
    logging.disable(logging.CRITICAL)
    try:
        refused = client.parse_authn_request_response(
            altered, BINDING_HTTP_POST, outstanding={manifest["request_id"]: "/"}
        ) is None
    except Exception:
        refused = True
    finally:
        logging.disable(logging.NOTSET)
    if not refused:
        raise SystemExit("pysaml2 accepted an altered response: the comparison would be meaningless")

    for _ in range(args.warmup):
        parse(client, encoded, manifest["request_id"])

    timer.reset()
    samples = []
    xmlsec_samples = []
    for _ in range(args.iterations):
        xmlsec_before = timer.ns
        start = time.perf_counter_ns()
        parse(client, encoded, manifest["request_id"])
        samples.append(time.perf_counter_ns() - start)
        xmlsec_samples.append(timer.ns - xmlsec_before)
    calls_per_response = timer.calls / args.iterations

    # The rest of each response's time, paired with its own xmlsec1 time before sorting.
    own = [total - xmlsec for total, xmlsec in zip(samples, xmlsec_samples)]
    samples.sort()
    median = statistics.median(samples)
    xmlsec_median = statistics.median(xmlsec_samples)
    result = {
        "pysaml2_version": version("pysaml2"),
        "python_version": platform.python_version(),
        "xmlsec1": xmlsec,
        "xmlsec1_version": client.sec.crypto.version,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "median_ns": median,
        "p10_ns": samples[len(samples) // 10],
        "p90_ns": samples[len(samples) * 9 // 10],
        "min_ns": samples[0],
        "mean_ns": statistics.fmean(samples),
        "xmlsec1_calls_per_response": calls_per_response,
        "xmlsec1_median_ns": xmlsec_median,
        "own_median_ns": statistics.median(own),
        "response_bytes": manifest["response_bytes"],
    }
    print(
        f"pysaml2 {result['pysaml2_version']}: median {median / 1e6:.2f} ms per response "
        f"(p10 {result['p10_ns'] / 1e6:.2f} ms, p90 {result['p90_ns'] / 1e6:.2f} ms) over "
        f"{args.iterations}; xmlsec1 commands: {calls_per_response:.1f} per response, median "
        f"{xmlsec_median / 1e6:.2f} ms; pysaml2's own work: median {result['own_median_ns'] / 1e6:.2f} ms"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
