namespace Horizon;

// PLACEHOLDER (being implemented).
public enum SafeTensorsDType { BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64, F4, F6_E2M3, F6_E3M2 }

public sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long Begin, long End);

public sealed class SafeTensorsFile : IDisposable
{
    public string Path { get; } = "";
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; } = new Dictionary<string, SafeTensorInfo>();
    public IReadOnlyDictionary<string, string> Metadata { get; } = new Dictionary<string, string>();
    public static SafeTensorsFile Open(string path) => throw new NotImplementedException();
    public ReadOnlyMemory<byte> GetData(string name) => throw new NotImplementedException();
    public void Dispose() { }
}
