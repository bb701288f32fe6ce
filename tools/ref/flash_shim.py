"""A stand-in for the flash-attn package, served by PyTorch's own FlashAttention-2 kernels, so
the official code's `flash_attn` branches (the backend the pipeline picks on A100/H100/H200,
S3D:sam3d_objects/pipeline/inference_pipeline.py:11-21) run where the flash-attn wheel is not
installed. Development only (tools/ref/plugin_gs_decode.py, tools/ref/bench_official.py).

  flash_shim(torch, how) -> (module-like object, backend name)
      how = 'varlen': torch.nn.attention.varlen.varlen_attn (else
      aten._flash_attention_forward), fp16/bf16 on CUDA; 'per-window': SDPA on each sequence
      in turn (any dtype or device; the same softmax per sequence as the official masked_sdpa,
      without its dense block-diagonal mask). The object has the functions the official
      sparse modules call: flash_attn_varlen_qkvpacked_func (full and windowed self-attention),
      flash_attn_varlen_kvpacked_func (sparse cross-attention to a dense condition),
      flash_attn_varlen_func, flash_attn_qkvpacked_func.
  flash_selfcheck(torch, shim) -> relative error of the shim against per-sequence SDPA on
      sequences of 1, 37 and 130 tokens (fp16, CUDA), self- and cross-attention.
  install(torch) -> backend name or None: when CUDA is usable and the 'varlen' shim passes its
      self-check (< 1e-2), put it in sys.modules['flash_attn'] so that importing the official
      sparse attention with SPARSE_ATTN_BACKEND=flash_attn binds to it.
"""
import sys
import types


def flash_shim(torch, how):
    import torch.nn.functional as F
    name = "per-window F.scaled_dot_product_attention"
    if how == "varlen":
        try:
            from torch.nn.attention.varlen import varlen_attn

            def varlen(q, k, v, cq, ck, mq, mk):
                return varlen_attn(q, k, v, cq, ck, mq, mk)
            name = "torch.nn.attention.varlen.varlen_attn"
        except ImportError:
            def varlen(q, k, v, cq, ck, mq, mk):
                return torch.ops.aten._flash_attention_forward(q, k, v, cq, ck, mq, mk, 0.0,
                                                               False, False)[0]
            name = "torch.ops.aten._flash_attention_forward"
    else:
        def varlen(q, k, v, cq, ck, mq, mk):       # q (Tq, H, C), k/v (Tk, H, C)
            out = torch.empty(q.shape[0], q.shape[1], v.shape[2], dtype=q.dtype,
                              device=q.device)
            bq, bk = cq.tolist(), ck.tolist()
            for a, e, c, d in zip(bq[:-1], bq[1:], bk[:-1], bk[1:]):
                qq = q[a:e].permute(1, 0, 2)[None]
                kk, vv = (t[c:d].permute(1, 0, 2)[None] for t in (k, v))
                out[a:e] = F.scaled_dot_product_attention(qq, kk, vv)[0].permute(1, 0, 2)
            return out

    def cont(*ts):
        return [t.contiguous() for t in ts]

    def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen):      # (T, 3, H, C)
        q, k, v = cont(*qkv.unbind(dim=1))
        cu = cu_seqlens.int()
        return varlen(q, k, v, cu, cu, int(max_seqlen), int(max_seqlen))

    def flash_attn_varlen_kvpacked_func(q, kv, cu_q, cu_k, max_q, max_k):   # kv (T, 2, H, C)
        k, v = cont(*kv.unbind(dim=1))
        return varlen(q.contiguous(), k, v, cu_q.int(), cu_k.int(), int(max_q), int(max_k))

    def flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k):
        q, k, v = cont(q, k, v)
        return varlen(q, k, v, cu_q.int(), cu_k.int(), int(max_q), int(max_k))

    def flash_attn_qkvpacked_func(qkv):                                      # (B, N, 3, H, C)
        B, N = qkv.shape[:2]
        cu = torch.arange(0, (B + 1) * N, N, device=qkv.device, dtype=torch.int32)
        o = flash_attn_varlen_qkvpacked_func(qkv.reshape(B * N, *qkv.shape[2:]), cu, N)
        return o.reshape(B, N, *o.shape[1:])

    m = types.SimpleNamespace(flash_attn_varlen_qkvpacked_func=flash_attn_varlen_qkvpacked_func,
                              flash_attn_varlen_kvpacked_func=flash_attn_varlen_kvpacked_func,
                              flash_attn_varlen_func=flash_attn_varlen_func,
                              flash_attn_qkvpacked_func=flash_attn_qkvpacked_func,
                              __name__="flash_attn (tools/ref/flash_shim.py: " + name + ")")
    return m, name


def flash_selfcheck(torch, shim, device="cuda", dtype=None):
    """The shim on sequences of 1, 37 and 130 tokens against per-sequence SDPA, self-attention
    (qkv packed) and cross-attention to 50 dense keys per sequence: max relative error."""
    import torch.nn.functional as F
    dtype = dtype or torch.float16
    g = torch.Generator(device=device).manual_seed(0)
    lens = [1, 37, 130]
    H, C = 4, 64
    cu = torch.tensor([0, 1, 38, 168], device=device, dtype=torch.int32)
    qkv = torch.randn(sum(lens), 3, H, C, device=device, dtype=dtype, generator=g)
    kv = torch.randn(3 * 50, 2, H, C, device=device, dtype=dtype, generator=g)
    cuk = torch.tensor([0, 50, 100, 150], device=device, dtype=torch.int32)
    o_self = shim.flash_attn_varlen_qkvpacked_func(qkv, cu, max(lens))
    o_cross = shim.flash_attn_varlen_kvpacked_func(qkv[:, 0], kv, cu, cuk, max(lens), 50)
    err = 0.0
    for o, kk, vv, kb in ((o_self, qkv[:, 1], qkv[:, 2], cu), (o_cross, kv[:, 0], kv[:, 1], cuk)):
        ref = []
        for i in range(3):
            a, b = int(cu[i]), int(cu[i + 1])
            c, d = int(kb[i]), int(kb[i + 1])
            q_, k_, v_ = (t.permute(1, 0, 2)[None] for t in (qkv[a:b, 0], kk[c:d], vv[c:d]))
            ref.append(F.scaled_dot_product_attention(q_, k_, v_)[0].permute(1, 0, 2))
        ref = torch.cat(ref).float()
        err = max(err, float((o.float() - ref).norm() / ref.norm()))
    return err


def install(torch):
    """sys.modules['flash_attn'] = the 'varlen' shim when it works here; returns its name, or
    None (no CUDA, or the self-check failed: the caller keeps the sdpa backend)."""
    if not torch.cuda.is_available():
        return None
    try:
        shim, name = flash_shim(torch, "varlen")
        err = flash_selfcheck(torch, shim)
    except Exception as e:                      # noqa: BLE001 - any failure means "not here"
        print(f"flash shim unavailable: {e}", flush=True)
        return None
    if err > 1e-2:
        print(f"flash shim self-check failed (relative error {err:.2e})", flush=True)
        return None
    sys.modules["flash_attn"] = shim
    return f"{name} (self-check {err:.1e})"
