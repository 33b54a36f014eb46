using System.Collections.Concurrent;
using System.Numerics;

namespace Horizon.Cpu;

/// <summary>
/// Radix-2 complex FFT of one power-of-two length n, in place on split real/imaginary float64 spans
/// (Cooley &amp; Tukey 1965, decimation in time: a bit-reversal permutation, then log₂n butterfly stages).
/// Forward: X[k] = Σ_j x[j]·e^(−2πi·jk/n), unscaled. Inverse: x[j] = (1/n)·Σ_k X[k]·e^(+2πi·jk/n).
/// A plan is immutable after construction and may be shared by threads.
/// </summary>
public sealed class FftPlan
{
    private readonly int[] _bitReverse;

    // Twiddles laid out stage by stage: the stage whose butterflies span 2h elements reads h consecutive
    // values at offset h − 1 (h = 1, 2, 4, …, n/2), so every butterfly loop reads them with stride 1.
    private readonly double[] _twiddleRe;
    private readonly double[] _twiddleIm;

    public FftPlan(int length)
    {
        if (length < 1 || !BitOperations.IsPow2(length))
            throw new ArgumentOutOfRangeException(nameof(length), length, "FFT length must be a positive power of two");
        Length = length;
        int bits = BitOperations.Log2((uint)length);
        _bitReverse = new int[length];
        for (int i = 0; i < length; i++)
            _bitReverse[i] = bits == 0 ? 0 : (int)(ReverseBits((uint)i) >> (32 - bits));
        _twiddleRe = new double[Math.Max(1, length - 1)];
        _twiddleIm = new double[Math.Max(1, length - 1)];
        for (int half = 1; half < length; half <<= 1)
        {
            for (int j = 0; j < half; j++)
            {
                // Each value from its own angle (no recurrence), so the table is accurate to ~1 ulp.
                var (sin, cos) = Math.SinCos(-Math.PI * j / half);
                _twiddleRe[half - 1 + j] = cos;
                _twiddleIm[half - 1 + j] = sin;
            }
        }
    }

    public int Length { get; }

    /// <summary>In-place forward transform of (re, im), each of length n; no scaling.</summary>
    public void Forward(Span<double> re, Span<double> im) => Transform(re, im);

    /// <summary>In-place inverse transform of (re, im), scaled by 1/n so that Inverse(Forward(x)) = x.</summary>
    public void Inverse(Span<double> re, Span<double> im)
    {
        // Swapping the real and imaginary parts on the way in and out turns the forward DFT into the
        // unscaled inverse: conj(F(conj z)) = swap(F(swap z)).
        Transform(im, re);
        double scale = 1.0 / Length;
        System.Numerics.Tensors.TensorPrimitives.Multiply(re[..Length], scale, re[..Length]);
        System.Numerics.Tensors.TensorPrimitives.Multiply(im[..Length], scale, im[..Length]);
    }

    private void Transform(Span<double> re, Span<double> im)
    {
        int n = Length;
        if (re.Length < n || im.Length < n)
            throw new ArgumentException($"FFT of length {n} needs spans of at least {n} values (got {re.Length}, {im.Length})");
        re = re[..n];
        im = im[..n];
        for (int i = 0; i < n; i++)
        {
            int j = _bitReverse[i];
            if (j > i)
            {
                (re[i], re[j]) = (re[j], re[i]);
                (im[i], im[j]) = (im[j], im[i]);
            }
        }
        for (int half = 1; half < n; half <<= 1)
        {
            var wr = _twiddleRe.AsSpan(half - 1, half);
            var wi = _twiddleIm.AsSpan(half - 1, half);
            for (int start = 0; start < n; start += 2 * half)
                Butterflies(re.Slice(start, 2 * half), im.Slice(start, 2 * half), wr, wi, half);
        }
    }

    /// <summary>One block of butterflies: (a, b) ← (a + w·b, a − w·b) for a = block[j], b = block[j + half].</summary>
    private static void Butterflies(Span<double> re, Span<double> im, ReadOnlySpan<double> wr, ReadOnlySpan<double> wi, int half)
    {
        var aRe = re[..half];
        var aIm = im[..half];
        var bRe = re.Slice(half, half);
        var bIm = im.Slice(half, half);
        int j = 0;
        if (Vector.IsHardwareAccelerated && half >= Vector<double>.Count)
        {
            int width = Vector<double>.Count;
            for (; j <= half - width; j += width)
            {
                var xr = new Vector<double>(bRe[j..]);
                var xi = new Vector<double>(bIm[j..]);
                var cr = new Vector<double>(wr[j..]);
                var ci = new Vector<double>(wi[j..]);
                var tr = xr * cr - xi * ci;
                var ti = xr * ci + xi * cr;
                var ar = new Vector<double>(aRe[j..]);
                var ai = new Vector<double>(aIm[j..]);
                (ar + tr).CopyTo(aRe[j..]);
                (ai + ti).CopyTo(aIm[j..]);
                (ar - tr).CopyTo(bRe[j..]);
                (ai - ti).CopyTo(bIm[j..]);
            }
        }
        for (; j < half; j++)
        {
            double tr = bRe[j] * wr[j] - bIm[j] * wi[j];
            double ti = bRe[j] * wi[j] + bIm[j] * wr[j];
            double ar = aRe[j], ai = aIm[j];
            aRe[j] = ar + tr;
            aIm[j] = ai + ti;
            bRe[j] = ar - tr;
            bIm[j] = ai - ti;
        }
    }

    private static uint ReverseBits(uint v)
    {
        v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
        v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
        v = ((v >> 4) & 0x0F0F0F0Fu) | ((v & 0x0F0F0F0Fu) << 4);
        v = ((v >> 8) & 0x00FF00FFu) | ((v & 0x00FF00FFu) << 8);
        return (v >> 16) | (v << 16);
    }
}

/// <summary>
/// FFT of a real sequence of even power-of-two length n through one complex FFT of length m = n/2 (real-input
/// packing): z[j] = x[2j] + i·x[2j+1], Z = FFT_m(z), then with E[k] = (Z[k] + conj Z[m−k])/2 (the spectrum of
/// the even samples) and O[k] = (Z[k] − conj Z[m−k])/(2i) (of the odd samples), X[k] = E[k] + e^(−2πik/n)·O[k]
/// for k = 0 … m. The inverse runs the same steps backwards. Half the work and memory of a complex FFT of length n.
/// </summary>
public sealed class RealFftPlan
{
    private readonly FftPlan _half;
    private readonly double[] _unpackRe; // e^(−2πik/n), k = 0 … m/2
    private readonly double[] _unpackIm;

    public RealFftPlan(int length)
    {
        if (length < 2 || !BitOperations.IsPow2(length))
            throw new ArgumentOutOfRangeException(nameof(length), length, "real FFT length must be a power of two ≥ 2");
        Length = length;
        int m = length / 2;
        _half = new FftPlan(m);
        _unpackRe = new double[m / 2 + 1];
        _unpackIm = new double[m / 2 + 1];
        for (int k = 0; k <= m / 2; k++)
        {
            var (sin, cos) = Math.SinCos(-2.0 * Math.PI * k / length);
            _unpackRe[k] = cos;
            _unpackIm[k] = sin;
        }
    }

    /// <summary>n, the length of the real sequence.</summary>
    public int Length { get; }

    /// <summary>n/2 + 1, the number of spectrum values kept (the rest follow from X[n−k] = conj X[k]).</summary>
    public int SpectrumLength => Length / 2 + 1;

    /// <summary>x (n real values) → X[0 … n/2] as (re, im), each of length n/2 + 1; unscaled.</summary>
    public void Forward(ReadOnlySpan<double> x, Span<double> re, Span<double> im)
    {
        int m = Length / 2;
        if (x.Length < Length || re.Length < m + 1 || im.Length < m + 1)
            throw new ArgumentException($"real FFT of length {Length}: x needs {Length} values and the spectrum {m + 1}");
        for (int j = 0; j < m; j++)
        {
            re[j] = x[2 * j];
            im[j] = x[2 * j + 1];
        }
        _half.Forward(re[..m], im[..m]);

        double z0r = re[0], z0i = im[0];
        re[0] = z0r + z0i;
        im[0] = 0;
        for (int k = 1; k <= m / 2; k++)
        {
            int q = m - k;
            double ar = re[k], ai = im[k], br = re[q], bi = im[q];
            double er = 0.5 * (ar + br), ei = 0.5 * (ai - bi);   // E[k]
            double or = 0.5 * (ai + bi), oi = -0.5 * (ar - br);  // O[k]
            double wr = _unpackRe[k], wi = _unpackIm[k];
            double tr = wr * or - wi * oi, ti = wr * oi + wi * or; // W^k·O[k]
            re[k] = er + tr;
            im[k] = ei + ti;
            re[q] = er - tr;   // X[m−k] = conj(E[k] − W^k·O[k])
            im[q] = -(ei - ti);
        }
        re[m] = z0r - z0i;
        im[m] = 0;
    }

    /// <summary>X[0 … n/2] as (re, im) → x (n real values), scaled by 1/n so that Inverse(Forward(x)) = x.
    /// The spectrum spans are used as scratch and overwritten.</summary>
    public void Inverse(Span<double> re, Span<double> im, Span<double> x)
    {
        int m = Length / 2;
        if (x.Length < Length || re.Length < m + 1 || im.Length < m + 1)
            throw new ArgumentException($"real FFT of length {Length}: x needs {Length} values and the spectrum {m + 1}");

        // Rebuild Z[k] = E[k] + i·O[k] with E[k] = (X[k] + conj X[m−k])/2, O[k] = (X[k] − conj X[m−k])·W^(−k)/2.
        {
            double x0 = re[0], xm = re[m];
            re[0] = 0.5 * (x0 + xm);
            im[0] = 0.5 * (x0 - xm);
        }
        for (int k = 1; k <= m / 2; k++)
        {
            int q = m - k;
            double ar = re[k], ai = im[k], br = re[q], bi = -im[q]; // X[k] and conj X[m−k]
            double er = 0.5 * (ar + br), ei = 0.5 * (ai + bi);
            double dr = 0.5 * (ar - br), di = 0.5 * (ai - bi);
            double wr = _unpackRe[k], wi = -_unpackIm[k];            // W^(−k)
            double or = dr * wr - di * wi, oi = dr * wi + di * wr;
            // Z[k] = E + i·O;  Z[m−k] = conj E + i·conj O (e and o are real sequences).
            re[k] = er - oi;
            im[k] = ei + or;
            re[q] = er + oi;
            im[q] = -ei + or;
        }
        _half.Inverse(re[..m], im[..m]);
        for (int j = 0; j < m; j++)
        {
            x[2 * j] = re[j];
            x[2 * j + 1] = im[j];
        }
    }
}

/// <summary>FFT plans cached by length, and the FFT convolutions built on them.</summary>
public static class Fft
{
    private static readonly ConcurrentDictionary<int, RealFftPlan> RealPlans = new();

    /// <summary>The shared real-input plan of length n (a power of two ≥ 2), created once.</summary>
    public static RealFftPlan RealPlan(int length) => RealPlans.GetOrAdd(length, static n => new RealFftPlan(n));

    /// <summary>The smallest power of two ≥ max(value, 2).</summary>
    public static int PaddedLength(long value)
    {
        if (value > 1 << 30)
            throw new ArgumentOutOfRangeException(nameof(value), value, "FFT length above 2^30");
        return (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(2, value));
    }

    /// <summary>
    /// Circular convolution of two real sequences of length n = plan.Length, in place:
    /// a[t] ← Σ_j a[j]·b[(t − j) mod n] (convolution theorem: IFFT(FFT(a)·FFT(b))). b is overwritten, and
    /// spectrum holds 4·(n/2 + 1) values of scratch.
    /// </summary>
    public static void CircularConvolveInPlace(RealFftPlan plan, Span<double> a, Span<double> b, Span<double> spectrum)
    {
        int s = plan.SpectrumLength;
        var aRe = spectrum[..s];
        var aIm = spectrum.Slice(s, s);
        var bRe = spectrum.Slice(2 * s, s);
        var bIm = spectrum.Slice(3 * s, s);
        plan.Forward(a, aRe, aIm);
        plan.Forward(b, bRe, bIm);
        for (int k = 0; k < s; k++)
        {
            double r = aRe[k] * bRe[k] - aIm[k] * bIm[k];
            double i = aRe[k] * bIm[k] + aIm[k] * bRe[k];
            aRe[k] = r;
            aIm[k] = i;
        }
        plan.Inverse(aRe, aIm, a);
    }

    /// <summary>
    /// Causal convolution y[t] = Σ_{s=0}^{t} h[s]·u[t − s] for t in [0, T), T = u.Length, computed with one
    /// zero-padded FFT convolution of length n ≥ 2T − 1 (so the circular wrap-around never reaches the outputs
    /// kept). h must hold at least T values; only its first T are read. Float64 throughout.
    /// </summary>
    public static void CausalConvolution(ReadOnlySpan<double> u, ReadOnlySpan<double> h, Span<double> y)
    {
        int length = u.Length;
        if (length == 0)
            return;
        if (h.Length < length || y.Length < length)
            throw new ArgumentException($"causal convolution of {length} values needs h and y of at least {length}");
        var plan = RealPlan(PaddedLength(2L * length - 1));
        int n = plan.Length;
        var a = new double[n];
        var b = new double[n];
        var spectrum = new double[4 * plan.SpectrumLength];
        u.CopyTo(a);
        h[..length].CopyTo(b);
        CircularConvolveInPlace(plan, a, b, spectrum);
        a.AsSpan(0, length).CopyTo(y);
    }
}
