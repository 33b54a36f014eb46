namespace Horizon.Cuda;

/// <summary>
/// A CUDA driver call failed. Carries the driver's error code and name (<c>cuGetErrorName</c>, for example
/// <c>CUDA_ERROR_OUT_OF_MEMORY</c>) and the operation that was attempted, so the one-line message says both.
/// </summary>
public sealed class CudaException : HorizonException
{
    public CudaException(string operation, int errorCode, string errorName, string description, string? detail = null)
        : base(FormatMessage(operation, errorCode, errorName, description, detail))
    {
        Operation = operation;
        ErrorCode = errorCode;
        ErrorName = errorName;
    }

    /// <summary>What was attempted, for example <c>cuMemAlloc_v2 (allocating 4096 bytes)</c>.</summary>
    public string Operation { get; }

    /// <summary>The driver's <c>CUresult</c>.</summary>
    public int ErrorCode { get; }

    /// <summary>The driver's name of <see cref="ErrorCode"/>, for example <c>CUDA_ERROR_INVALID_VALUE</c>.</summary>
    public string ErrorName { get; }

    private static string FormatMessage(string operation, int code, string name, string description, string? detail)
    {
        string message = $"CUDA: {operation} failed: {name} ({code}): {description}";
        return string.IsNullOrWhiteSpace(detail) ? message : $"{message}: {detail.ReplaceLineEndings(" ").Trim()}";
    }
}
