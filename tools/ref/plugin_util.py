"""What the full-size GPU plugins (tools/ref/plugin_*.py) share: their common command line and
the start every one of them makes (the stage executable present, directories, the official
code's environment)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402
import refutil_sparse as rs  # noqa: E402


def common_args(ap, work):
    """--bin, --work (default `work`), --out, --s3d, --config-dir, --size, --device, --seed."""
    ap.add_argument("--bin", default="build")
    ap.add_argument("--work", default=work)
    ap.add_argument("--out", default=None, help="results directory (default: --work)")
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--config-dir", default=".ref/Fast-SAM3D/checkpoints/hf")
    ap.add_argument("--size", choices=["tiny", "full"], default="full")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--seed", type=int, default=0)


def start(args, exe_name):
    """After parse_args: None when args.bin/exe_name is missing (the error printed: exit 2),
    else the directories made, the official code's environment set up and torch imported
    (returned)."""
    args.out = args.out or args.work
    exe = os.path.join(args.bin, exe_name)
    if not os.access(exe, os.X_OK):
        print(f"error: {exe} not built (HINT: make CUDA_ARCH=90 {exe})", file=sys.stderr)
        return None
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d)
    import torch
    return torch


def run_stage(cmd, profile=False, env=None):
    """Run a stage command line (S3D_PROFILE=1 when profile), print it and its exit status and
    cold wall time (loading included); (exit status, its stderr, its pid)."""
    import subprocess
    import time
    env = dict(env or os.environ, S3D_PROFILE="1" if profile else "0")
    print("running:", " ".join(cmd), "(S3D_PROFILE=1)" if profile else "", flush=True)
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    err = p.communicate()[1]
    print(f"  exit {p.returncode}, {time.perf_counter() - t:.2f} s wall (cold, incl. loading)",
          flush=True)
    if p.returncode != 0:
        print(err[-3000:])
    return p.returncode, err, p.pid
