"""Download throughput and resume cost against the fake Civitai on 127.0.0.1.

    python bench/download_bench.py [--mb 256] [--repeat 3] [--cuts 3]

- throughput: core.civitai.download (redirect, .part, SHA256, fsync, atomic rename) against a raw
  streaming copy of the same bytes from the same server (urllib + shutil.copyfileobj, no hashing),
  and against the same copy followed by fsync (ours syncs before the atomic rename), run
  alternately; ratios are medians over --repeat rounds (goal: ours >= 0.8x raw);
- resume: the connection is cut at --cuts random offsets; bytes fetched again / file size
  (goal < 5 %).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cuts", type=int, default=3)
    parser.add_argument("--link-mbps", type=float, default=None,
                        help="pace the server to this many MB/s, like a real download link (default: loopback speed)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where files are written (e.g. /dev/shm to take the disk's write-back out of the "
                             "comparison); default: a temporary folder")
    args = parser.parse_args()

    import runner

    runner.load_pack()
    from diffusers_presets.core.civitai import download, transport
    from diffusers_presets.core.civitai.download import DownloadSpec, download_file
    from diffusers_presets.core.host import HeadlessHost, set_host
    from tests.fake_civitai import VERSION, Faults, FakeCivitai, safetensors_bytes

    work = Path(tempfile.mkdtemp(prefix="download-bench-", dir=args.dir))
    host = HeadlessHost()
    host.models_root = work / "models"
    set_host(host)
    transport.BACKOFF.base = download.BACKOFF.base = 0.01
    data = safetensors_bytes(args.mb * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    size_mb = len(data) / 1e6
    payload = work / "payload.safetensors"
    payload.write_bytes(data)
    spec = DownloadSpec(f"{{base}}/api/download/models/{VERSION}", "bench file", sha256=sha, size=len(data),
                        civitai=True)

    with fake_server(payload, args.link_mbps) as base:  # its own process: no GIL shared with the client
        storage_url = f"{base.replace('127.0.0.1', 'localhost')}/storage/{VERSION}/{VERSION * 10}/{payload.name}"
        spec = replace(spec, url=spec.url.format(base=base))
        raw_times, synced_times, our_times = [], [], []
        for attempt in range(args.repeat):
            for times, sync in ((raw_times, False), (synced_times, True)):
                target = work / f"raw-{attempt}.safetensors"
                started = time.perf_counter()
                with urllib.request.urlopen(storage_url) as response, open(target, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
                    if sync:  # the same durability as ours: on disk before it is used
                        out.flush()
                        os.fsync(out.fileno())
                times.append(time.perf_counter() - started)
                target.unlink()
            dest = work / "models" / "loras" / f"ours-{attempt}.safetensors"
            started = time.perf_counter()
            download_file(spec, dest)
            our_times.append(time.perf_counter() - started)
            dest.unlink()
        ratio = statistics.median(raw / ours for raw, ours in zip(raw_times, our_times))
        synced_ratio = statistics.median(raw / ours for raw, ours in zip(synced_times, our_times))
        print(f"size {size_mb:.0f} MB, link {f'{args.link_mbps:g} MB/s' if args.link_mbps else 'loopback (unpaced)'}")
        print(f"raw streaming copy         : {size_mb / statistics.median(raw_times):8.1f} MB/s (median)")
        print(f"raw streaming copy + fsync : {size_mb / statistics.median(synced_times):8.1f} MB/s (median)")
        print(f"verified download          : {size_mb / statistics.median(our_times):8.1f} MB/s (median); "
              f"{ratio:.2f}x raw, {synced_ratio:.2f}x raw + fsync (medians of rounds)")

    # Resume cost: the fake in this process, so that its faults can be scripted.
    with FakeCivitai() as server:
        server.add_lora(1, VERSION, data)
        cuts = sorted(random.Random(1).sample(range(1, len(data)), args.cuts))
        server.versions[VERSION].faults = Faults(cut_at=list(cuts))
        download_file(replace(spec, url=f"{server.base_url}/api/download/models/{VERSION}"),
                      work / "models" / "loras" / "cut.safetensors")
        again = server.storage_bytes - len(data)
        print(f"resume after {args.cuts} cuts: {again} bytes fetched again ({100 * again / len(data):.3f} %)")


@contextmanager
def fake_server(payload: Path, link_mbps: Optional[float]) -> Iterator[str]:
    rate = [str(link_mbps)] if link_mbps else []
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_civitai.py"), str(payload), *rate],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
