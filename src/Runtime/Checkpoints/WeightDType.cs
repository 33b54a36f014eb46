namespace Horizon;

/// <summary>Element types the kernels read weights in. F16 and BF16 stay in their stored 16 bits and are widened
/// to float32 as they are used (.NET 10 has no BFloat16 type: BF16 is kept as ushort bits).</summary>
public enum WeightDType
{
    F32,
    F16,
    BF16,
}

public static class WeightDTypeExtensions
{
    public static int ByteSize(this WeightDType dtype) => dtype == WeightDType.F32 ? 4 : 2;
}
