using NUnit.Framework;

namespace Horizon.Tests;

public class SmokeTests
{
    [Test]
    public void WeightConversion_widens_bf16_bits()
    {
        ushort[] bits = [0x3F80, 0xC000]; // 1.0, -2.0
        var result = new float[2];
        WeightConversion.BFloat16ToSingle(bits, result);
        Assert.That(result, Is.EqualTo(new[] { 1.0f, -2.0f }));
    }
}
