using System.Runtime.CompilerServices;

namespace Horizon.Cuda;

/// <summary>
/// A typed device address (a <c>CUdeviceptr</c> to elements of <typeparamref name="T"/>): what a kernel's
/// <c>T*</c> parameter takes in its generated launcher. A <see cref="CudaDeviceVariable{T}"/> converts to one
/// implicitly (a variable of another element type does not, so the compiler checks the pointee type); an offset
/// into a variable is <see cref="CudaDeviceVariable{T}.At"/> or <c>pointer + elements</c>.
/// </summary>
public readonly struct DevicePointer<T> : IEquatable<DevicePointer<T>> where T : unmanaged
{
    public DevicePointer(ulong address) => Address = address;

    /// <summary>The device address; 0 is C's nullptr.</summary>
    public ulong Address { get; }

    /// <summary>nullptr, for a kernel's optional pointer arguments.</summary>
    public static DevicePointer<T> Null => default;

    public bool IsNull => Address == 0;

    /// <summary>The variable's start; a null variable gives <see cref="Null"/>.</summary>
    public static implicit operator DevicePointer<T>(CudaDeviceVariable<T>? variable) =>
        variable is null ? default : new DevicePointer<T>(variable.DevicePointer);

    /// <summary>The address <paramref name="elements"/> elements further on (no bounds: use <see cref="CudaDeviceVariable{T}.At"/> for a checked one).</summary>
    public static unsafe DevicePointer<T> operator +(DevicePointer<T> pointer, long elements) =>
        new(unchecked(pointer.Address + (ulong)(elements * sizeof(T))));

    /// <summary>The same address seen as elements of <typeparamref name="TOther"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public DevicePointer<TOther> As<TOther>() where TOther : unmanaged => new(Address);

    public bool Equals(DevicePointer<T> other) => Address == other.Address;

    public override bool Equals(object? obj) => obj is DevicePointer<T> other && Equals(other);

    public override int GetHashCode() => Address.GetHashCode();

    public static bool operator ==(DevicePointer<T> left, DevicePointer<T> right) => left.Equals(right);

    public static bool operator !=(DevicePointer<T> left, DevicePointer<T> right) => !left.Equals(right);

    public override string ToString() => $"({typeof(T).Name}*)0x{Address:x}";
}
