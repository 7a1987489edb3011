"""pde_lab's SpectralConv against a variant computing the truncated Fourier transforms as matmuls.

The FNO keeps few modes (12 of 43 along an 85-point axis, 16 of 129 along a 256-point one), so the
kept coefficients can be computed as a product with a precomputed ``(n, modes)`` DFT basis instead of
a full FFT followed by truncation, and the inverse as a product with the transposed basis instead of
zero-filling and an inverse FFT. On one CPU thread that is faster, mostly in the backward pass
(whose rFFT gradient builds a full-size complex array), and above all on axes of awkward length
(85 = 5·17). The variant below uses the weights of a pde_lab ``SpectralConv`` and gives the same
output to float32 rounding; it is a measurement, not a replacement. The library's own version of
it is ``FNO(transform="dft")`` (``pde_lab/operators/dft.py``); the second table times whole FNO
training steps with ``transform="fft"`` and ``"dft"`` on the same weights.

    python benchmarks/spectral_conv_variants.py [--reps 15]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_lines, median, pin_threads, table  # noqa: E402


def _angles(n: int, m: int, two_sided: bool):
    import torch

    x = torch.arange(n, dtype=torch.float64)
    k = torch.cat([torch.arange(m), torch.arange(-m, 0)]) if two_sided else torch.arange(m)
    return 2 * math.pi * x[:, None] * k[None, :].double() / n            # (n, K)


def make_variant(sc, space):
    """A module with ``sc``'s weights computing the same map with DFT matmuls (1D or 2D)."""
    import torch

    class MatmulDFT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sc = sc
            m1 = sc.modes[-1]
            a1 = _angles(space[-1], m1, False)
            w = torch.full((m1,), 2.0, dtype=torch.float64)
            w[0] = 1.0                                                      # irfft: modes 1.. count twice
            # x @ fwd = [Re | Im] of rfft(x)[:m1];  [Re | Im] @ inv = irfft of the m1 kept modes.
            self.register_buffer("fwd", torch.cat([torch.cos(a1), -torch.sin(a1)], 1).float())
            self.register_buffer("inv", (torch.cat([torch.cos(a1).T * w[:, None], -torch.sin(a1).T * w[:, None]], 0)
                                         / space[-1]).float())
            if len(space) == 2:
                a0 = _angles(space[0], sc.modes[0], True)
                self.register_buffer("fwd0", torch.polar(torch.ones_like(a0), -a0).to(torch.complex64))
                self.register_buffer("inv0", (torch.polar(torch.ones_like(a0), a0) / space[0]).T.contiguous()
                                     .to(torch.complex64))

        def forward(self, x):
            m1 = self.sc.modes[-1]
            h = torch.matmul(x, self.fwd)
            xh = torch.complex(h[..., :m1], h[..., m1:])
            w = torch.view_as_complex(self.sc.weight)
            if x.dim() == 3:
                oh = torch.einsum("bik,iok->bok", xh, w)
            else:
                xh = torch.matmul(xh.transpose(-1, -2), self.fwd0)                  # (B, C, m1, 2 m0)
                oh = torch.einsum("bikj,iojk->bokj", xh, w)
                oh = torch.matmul(oh, self.inv0).transpose(-1, -2)                  # (B, O, n0, m1)
            return torch.matmul(torch.cat([oh.real, oh.imag], -1), self.inv)

    return MatmulDFT()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    pin_threads(a.threads)
    import torch
    from pde_lab.operators.fno import SpectralConv

    def cpu_ms(fn):
        for _ in range(3):
            fn()
        out = []
        for _ in range(a.reps):
            c0 = time.process_time()
            fn()
            out.append(time.process_time() - c0)
        return 1e3 * median(out)

    rows = []
    for name, (b, c, space, modes) in {"1D Burgers layer": (20, 64, (256,), (16,)),
                                       "2D Darcy layer": (20, 32, (85, 85), (12, 12))}.items():
        torch.manual_seed(0)
        sc = SpectralConv(c, c, modes)
        var = make_variant(sc, space)
        x = torch.randn(b, c, *space, requires_grad=True)
        with torch.no_grad():
            ref = sc(x)
            diff = (var(x) - ref).abs().max().item() / ref.abs().max().item()

        def fwd(mod):
            def run():
                with torch.no_grad():
                    mod(x)
            return run

        def fwd_bwd(mod):
            def run():
                out = mod(x)
                out.backward(torch.ones_like(out))
                x.grad = None
                sc.weight.grad = None
            return run

        f0, f1 = cpu_ms(fwd(sc)), cpu_ms(fwd(var))
        g0, g1 = cpu_ms(fwd_bwd(sc)), cpu_ms(fwd_bwd(var))
        rows.append([name, f"{b}x{c}x{'x'.join(map(str, space))}, modes {modes}", f"{f0:.1f}", f"{f1:.1f}",
                     f"{g0:.1f}", f"{g1:.1f}", f"{g0 / g1:.2f}x", f"{diff:.1e}"])
    print("\n".join(machine_lines("cpu", [("timing", f"process CPU time, median of {a.reps} calls")])))
    print()
    print(table(["layer", "input", "FFT fwd [ms]", "matmul-DFT fwd [ms]", "FFT fwd+bwd [ms]",
                 "matmul-DFT fwd+bwd [ms]", "fwd+bwd speed-up", "max rel. difference"], rows))
    print()
    print(fno_step_table(cpu_ms))


def fno_step_table(cpu_ms) -> str:
    """Whole FNO training steps (forward, loss, backward, Adam) with the library's two transforms,
    ``FNO(transform="fft")`` and ``FNO(transform="dft")``, on the same weights and data."""
    import torch
    from pde_lab.operators import build_model

    rows = []
    for name, (b, n_dims, space, kw) in {
            "FNO-1D Burgers": (20, 1, (256,), {}),
            "FNO-2D Darcy": (20, 2, (85, 85), {}),
            "FNO-2D 128x128": (16, 2, (128, 128), {})}.items():
        torch.manual_seed(0)
        x, y = torch.randn(b, 1, *space), torch.randn(b, 1, *space)
        models = {t: build_model("fno", n_dims=n_dims, transform=t, **kw) for t in ("fft", "dft")}
        models["dft"].load_state_dict(models["fft"].state_dict())
        with torch.no_grad():
            ref = models["fft"](x)
            diff = (models["dft"](x) - ref).abs().max().item() / ref.abs().max().item()

        def step(model):
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def run():
                loss = (model(x) - y).square().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            return run

        t_fft, t_dft = cpu_ms(step(models["fft"])), cpu_ms(step(models["dft"]))
        rows.append([name, f"batch {b}, {'x'.join(map(str, space))}", f"{t_fft:.0f}", f"{t_dft:.0f}",
                     f"{t_fft / t_dft:.2f}x", f"{diff:.1e}"])
    return table(["FNO training step (default width/modes)", "data", "transform=fft [ms]", "transform=dft [ms]",
                  "speed-up", "max rel. difference of outputs"], rows)


if __name__ == "__main__":
    main()
