using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// The safetensors reader against files from <see cref="SafeTensorsWriter"/> and hand-crafted files that each
/// break exactly one rule of the format.
/// </summary>
public class SafeTensorsTests
{
    private string _directory = "";

    [SetUp]
    public void CreateDirectory()
    {
        _directory = Path.Combine(Path.GetTempPath(), "horizon-safetensors-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_directory);
    }

    [TearDown]
    public void DeleteDirectory()
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }

    // ---- Valid files ----------------------------------------------------------------------------------------

    [Test]
    public void Round_trip_keeps_dtypes_shapes_bytes_and_metadata()
    {
        float[] f32 = [1.5f, -2f, 3.25f, 0f, 1e-7f, float.MaxValue];
        Half[] f16 = [(Half)1, (Half)(-0.5), (Half)65504];
        ushort[] bf16 = [0x3F80, 0xC000, 0x0000, 0x7F80];
        long[] i64 = [long.MinValue, -1, 0, long.MaxValue];
        var tensors = new List<(string, SafeTensorsDType, long[], byte[])>
        {
            ("layers.0.weight", SafeTensorsDType.F32, [2, 3], Bytes(f32)),
            ("empty.matrix", SafeTensorsDType.F32, [0, 3], []),
            ("half", SafeTensorsDType.F16, [3], Bytes(f16)),
            ("brain", SafeTensorsDType.BF16, [2, 2], Bytes(bf16)),
            ("empty.vector", SafeTensorsDType.I8, [0], []),
            ("ids", SafeTensorsDType.I64, [4], Bytes(i64)),
            ("scalar", SafeTensorsDType.F64, [], Bytes([Math.PI])),
            ("packed", SafeTensorsDType.F4, [2, 3], [0x21, 0x43, 0x65]),
        };
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcödé \"quoted\"\nnewline" };
        string path = InDirectory("model.safetensors");

        SafeTensorsWriter.Write(path, tensors, metadata);
        using var file = SafeTensorsFile.Open(path);

        Assert.That(file.Path, Is.EqualTo(path));
        Assert.That(file.Tensors.Keys, Is.EquivalentTo(tensors.Select(t => t.Item1)));
        foreach (var (name, dtype, shape, data) in tensors)
        {
            var info = file.Tensors[name];
            Assert.That(info.Name, Is.EqualTo(name));
            Assert.That(info.DType, Is.EqualTo(dtype), name);
            Assert.That(info.Shape, Is.EqualTo(shape), name);
            Assert.That(info.End - info.Begin, Is.EqualTo(data.Length), name);
            Assert.That(file.GetData(name).ToArray(), Is.EqualTo(data), name);
        }
        Assert.That(file.Metadata, Is.EquivalentTo(metadata));
        Assert.That(MemoryMarshal.Cast<byte, float>(file.GetData("layers.0.weight").Span).ToArray(), Is.EqualTo(f32));
    }

    [Test]
    public void Writer_pads_the_header_with_spaces_to_a_multiple_of_8()
    {
        string path = InDirectory("padded.safetensors");
        SafeTensorsWriter.Write(path, [("x", SafeTensorsDType.U8, [3], [1, 2, 3])]);

        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.That(headerLength % 8, Is.EqualTo(0));
        Assert.That(bytes.Length, Is.EqualTo(8 + headerLength + 3));
        Assert.That(bytes[(int)(8 + headerLength - 1)], Is.EqualTo((byte)' '));
    }

    [Test]
    public void Writer_without_tensors_or_metadata_makes_a_readable_file()
    {
        string path = InDirectory("empty.safetensors");
        SafeTensorsWriter.Write(path, []);
        using var file = SafeTensorsFile.Open(path);
        Assert.That(file.Tensors, Is.Empty);
        Assert.That(file.Metadata, Is.Empty);
    }

    [Test]
    public void Writer_rejects_data_that_does_not_match_dtype_and_shape()
    {
        string path = InDirectory("bad.safetensors");
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [("x", SafeTensorsDType.F32, [2], new byte[4])]));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [("x", SafeTensorsDType.U8, [1], [1]), ("x", SafeTensorsDType.U8, [1], [1])]));
    }

    [Test]
    public void Hand_written_header_with_trailing_space_padding_is_accepted()
    {
        // 13 spaces: padding need not make the length a multiple of 8, it only has to be JSON whitespace.
        string path = Craft("padding.safetensors",
            """{"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}""" + new string(' ', 13),
            data: [10, 11, 12, 13]);

        using var file = SafeTensorsFile.Open(path);

        Assert.That(file.GetData("a").ToArray(), Is.EqualTo(new byte[] { 10, 11 }));
        Assert.That(file.GetData("b").ToArray(), Is.EqualTo(new byte[] { 12, 13 }));
        Assert.That(file.Tensors.Keys, Is.EqualTo(new[] { "a", "b" }), "enumerated in offset order");
    }

    [Test]
    public void Reads_the_example_from_the_reference_documentation()
    {
        // The byte string from the Rust crate's SafeTensors::deserialize documentation, with N = 0x3C = 60.
        string path = InDirectory("reference.safetensors");
        byte[] bytes = [.. "<\0\0\0\0\0\0\0"u8, .. """{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}"""u8, .. new byte[16]];
        File.WriteAllBytes(path, bytes);

        using var file = SafeTensorsFile.Open(path);

        var info = file.Tensors["test"];
        Assert.That((info.DType, info.Begin, info.End), Is.EqualTo((SafeTensorsDType.I32, 0L, 16L)));
        Assert.That(info.Shape, Is.EqualTo(new long[] { 2, 2 }));
        Assert.That(file.GetData("test").Length, Is.EqualTo(16));
    }

    [Test]
    public void Zero_byte_tensors_may_share_an_offset_and_null_metadata_means_none()
    {
        string path = Craft("zeros.safetensors",
            """{"__metadata__":null,"z1":{"dtype":"F4","shape":[0],"data_offsets":[0,0]},"z2":{"dtype":"F32","shape":[4,0],"data_offsets":[0,0]},"w":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}""",
            data: [7]);

        using var file = SafeTensorsFile.Open(path);

        Assert.That(file.GetData("z1").Length, Is.Zero);
        Assert.That(file.GetData("z2").Length, Is.Zero);
        Assert.That(file.GetData("w").ToArray(), Is.EqualTo(new byte[] { 7 }));
        Assert.That(file.Metadata, Is.Empty);
    }

    [Test]
    public void Escaped_names_and_unknown_fields_are_read_like_the_reference()
    {
        string path = Craft("escaped.safetensors",
            """{"\u0041.w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":{"ignored":[1,2]}}}""", data: [1]);
        using var file = SafeTensorsFile.Open(path);
        Assert.That(file.Tensors.Keys, Is.EqualTo(new[] { "A.w" }));
    }

    // ---- One crafted file per rule ----------------------------------------------------------------------------

    [Test]
    public void Missing_file_is_FileNotFound()
    {
        AssertBreaks(InDirectory("absent.safetensors"), SafeTensorsRule.FileNotFound);
        AssertBreaks(Path.Combine(_directory, "no-such-dir", "absent.safetensors"), SafeTensorsRule.FileNotFound);
    }

    [Test]
    public void A_directory_is_FileUnreadable()
    {
        string path = InDirectory("a-directory.safetensors");
        Directory.CreateDirectory(path);
        AssertBreaks(path, SafeTensorsRule.FileUnreadable);
    }

    [TestCase(0)]
    [TestCase(7)]
    public void File_shorter_than_8_bytes_is_HeaderTooSmall(int length)
    {
        AssertBreaks(Raw("short.safetensors", new byte[length]), SafeTensorsRule.HeaderTooSmall);
    }

    [TestCase(100_000_001UL)]
    [TestCase(ulong.MaxValue)]
    public void Header_length_above_100_MB_is_HeaderTooLarge(ulong declaredLength)
    {
        // Only the 8-byte prefix exists: the reader must refuse before trying to read (or allocate) the header.
        AssertBreaks(Raw("large.safetensors", Prefix(declaredLength)), SafeTensorsRule.HeaderTooLarge);
    }

    [Test]
    public void Header_length_past_the_end_of_the_file_is_InvalidHeaderLength()
    {
        byte[] bytes = [.. Prefix(64), .. "{}        "u8];
        AssertBreaks(Raw("cut.safetensors", bytes), SafeTensorsRule.InvalidHeaderLength);
    }

    [TestCase(new byte[] { 0xFF }, TestName = "Header_with_byte_FF_is_InvalidHeaderUtf8")]
    [TestCase(new byte[] { 0xC0, 0x80 }, TestName = "Header_with_overlong_encoding_is_InvalidHeaderUtf8")]
    [TestCase(new byte[] { 0xED, 0xA0, 0x80 }, TestName = "Header_with_encoded_surrogate_is_InvalidHeaderUtf8")]
    public void Header_that_is_not_UTF8_is_InvalidHeaderUtf8(byte[] badBytes)
    {
        byte[] header = [.. "{\"a"u8, .. badBytes, .. "\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"u8];
        AssertBreaks(Raw("utf8.safetensors", [.. Prefix((ulong)header.Length), .. header]), SafeTensorsRule.InvalidHeaderUtf8);
    }

    [TestCase("", TestName = "Empty_header_is_InvalidHeaderJson")]
    [TestCase(" {}", TestName = "Header_with_leading_space_is_InvalidHeaderJson")]
    [TestCase("[]", TestName = "Header_array_is_InvalidHeaderJson")]
    [TestCase("{\"a\":", TestName = "Truncated_header_is_InvalidHeaderJson")]
    [TestCase("{} {}", TestName = "Header_with_two_values_is_InvalidHeaderJson")]
    [TestCase("{}\0\0\0", TestName = "Header_padded_with_NUL_is_InvalidHeaderJson")]
    [TestCase("{/* c */}", TestName = "Header_with_comment_is_InvalidHeaderJson")]
    [TestCase("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0],}}", TestName = "Header_with_trailing_comma_is_InvalidHeaderJson")]
    [TestCase("{\"\\ud800\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", TestName = "Header_with_lone_surrogate_escape_is_InvalidHeaderJson")]
    public void Header_that_is_not_a_JSON_object_is_InvalidHeaderJson(string header)
    {
        AssertBreaks(Craft("json.safetensors", header, data: []), SafeTensorsRule.InvalidHeaderJson);
    }

    [TestCase("""{"t":[1]}""", TestName = "Tensor_entry_not_an_object_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"shape":[1],"data_offsets":[0,1]}}""", TestName = "Missing_dtype_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","data_offsets":[0,1]}}""", TestName = "Missing_shape_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","shape":[1]}}""", TestName = "Missing_data_offsets_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":8,"shape":[1],"data_offsets":[0,1]}}""", TestName = "Numeric_dtype_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","shape":"1","data_offsets":[0,1]}}""", TestName = "String_shape_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}""", TestName = "Negative_dimension_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}""", TestName = "Fractional_dimension_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","shape":[1e0],"data_offsets":[0,1]}}""", TestName = "Exponent_dimension_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","shape":[9007199254740993],"data_offsets":[0,1]}}""", TestName = "Dimension_above_2_pow_53_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551617]}}""", TestName = "Offset_above_64_bits_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}""", TestName = "Three_data_offsets_is_InvalidTensorInfo")]
    [TestCase("""{"t":{"dtype":"U8","shape":[1],"shape":[1],"data_offsets":[0,1]}}""", TestName = "Repeated_field_is_InvalidTensorInfo")]
    public void Malformed_tensor_entry_is_InvalidTensorInfo(string header)
    {
        AssertBreaks(Craft("info.safetensors", header, data: [0]), SafeTensorsRule.InvalidTensorInfo);
    }

    [TestCase("F128")]
    [TestCase("f32")]
    [TestCase("14")]
    public void Unknown_dtype_string_is_UnknownDType(string dtype)
    {
        string header = $$$"""{"t":{"dtype":"{{{dtype}}}","shape":[1],"data_offsets":[0,4]}}""";
        AssertBreaks(Craft("dtype.safetensors", header, data: new byte[4]), SafeTensorsRule.UnknownDType);
    }

    [TestCase("""{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""", TestName = "Repeated_tensor_name_is_DuplicateName")]
    [TestCase("""{"__metadata__":{},"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"__metadata__":{}}""", TestName = "Repeated_metadata_entry_is_DuplicateName")]
    [TestCase("""{"__metadata__":{"k":"1","k":"2"},"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}""", TestName = "Repeated_metadata_key_is_DuplicateName")]
    public void Repeated_key_is_DuplicateName(string header)
    {
        AssertBreaks(Craft("duplicate.safetensors", header, data: new byte[2]), SafeTensorsRule.DuplicateName);
    }

    [TestCase("""{"__metadata__":[],"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", TestName = "Metadata_array_is_InvalidMetadata")]
    [TestCase("""{"__metadata__":{"k":1},"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", TestName = "Metadata_number_value_is_InvalidMetadata")]
    public void Metadata_that_is_not_strings_is_InvalidMetadata(string header)
    {
        AssertBreaks(Craft("metadata.safetensors", header, data: [0]), SafeTensorsRule.InvalidMetadata);
    }

    [TestCase("""{"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}""", TestName = "First_tensor_not_at_0_is_InvalidOffset")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}""", TestName = "Hole_between_tensors_is_InvalidOffset")]
    [TestCase("""{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}""", TestName = "Overlapping_tensors_is_InvalidOffset")]
    [TestCase("""{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}""", TestName = "Two_tensors_at_the_same_offsets_is_InvalidOffset")]
    [TestCase("""{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"U8","shape":[0],"data_offsets":[3,0]}}""", TestName = "End_before_begin_is_InvalidOffset")]
    public void Tensors_that_do_not_tile_the_buffer_are_InvalidOffset(string header)
    {
        AssertBreaks(Craft("offsets.safetensors", header, data: new byte[3]), SafeTensorsRule.InvalidOffset);
    }

    [Test]
    public void Invalid_offset_message_names_the_tensor_and_both_positions()
    {
        string path = Craft("message.safetensors",
            """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}""",
            data: new byte[16]);
        var error = AssertBreaks(path, SafeTensorsRule.InvalidOffset);
        Assert.That(error.Message, Is.EqualTo($"{path}: InvalidOffset: tensor 'b' begins at 12 but the previous tensor ends at 16"));
    }

    [TestCase("""{"t":{"dtype":"U8","shape":[9007199254740992,9007199254740992],"data_offsets":[0,0]}}""", TestName = "Element_count_overflow_is_ShapeOverflow")]
    [TestCase("""{"t":{"dtype":"F64","shape":[9007199254740992,512],"data_offsets":[0,0]}}""", TestName = "Bit_count_overflow_is_ShapeOverflow")]
    [TestCase("""{"t":{"dtype":"U8","shape":[9007199254740992,9007199254740992,0],"data_offsets":[0,0]}}""", TestName = "Overflow_before_a_zero_dimension_is_ShapeOverflow")]
    public void Shape_whose_size_overflows_is_ShapeOverflow(string header)
    {
        AssertBreaks(Craft("overflow.safetensors", header, data: []), SafeTensorsRule.ShapeOverflow);
    }

    [TestCase("F4", 3, TestName = "Three_F4_elements_are_MisalignedSlice")]
    [TestCase("F6_E2M3", 2, TestName = "Two_F6_elements_are_MisalignedSlice")]
    public void Sub_byte_tensor_not_filling_whole_bytes_is_MisalignedSlice(string dtype, int count)
    {
        string header = $$$"""{"t":{"dtype":"{{{dtype}}}","shape":[{{{count}}}],"data_offsets":[0,2]}}""";
        AssertBreaks(Craft("misaligned.safetensors", header, data: new byte[2]), SafeTensorsRule.MisalignedSlice);
    }

    [Test]
    public void Byte_range_not_matching_dtype_and_shape_is_TensorSizeMismatch()
    {
        string header = """{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""";
        AssertBreaks(Craft("size.safetensors", header, data: new byte[4]), SafeTensorsRule.TensorSizeMismatch);
    }

    [TestCase(3, TestName = "Missing_data_byte_is_IncompleteBuffer")]
    [TestCase(5, TestName = "Trailing_data_byte_is_IncompleteBuffer")]
    public void Data_not_ending_at_the_end_of_the_file_is_IncompleteBuffer(int dataBytes)
    {
        string header = """{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""";
        AssertBreaks(Craft("incomplete.safetensors", header, data: new byte[dataBytes]), SafeTensorsRule.IncompleteBuffer);
    }

    [Test]
    public void Message_stays_on_one_line_when_a_name_holds_a_newline()
    {
        string header = """{"bad\nname\r":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""";
        var error = AssertBreaks(Craft("newline.safetensors", header, data: new byte[2]), SafeTensorsRule.InvalidOffset);
        Assert.That(error.Message, Does.Contain(@"'bad\u000aname\u000d'"));
    }

    // ---- Access and lifetime ----------------------------------------------------------------------------------

    [Test]
    public void GetData_of_an_unknown_name_is_TensorNotFound()
    {
        string path = InDirectory("one.safetensors");
        SafeTensorsWriter.Write(path, [("x", SafeTensorsDType.U8, [1], [1])]);
        using var file = SafeTensorsFile.Open(path);
        var error = Assert.Throws<SafeTensorsException>(() => file.GetData("y"))!;
        Assert.That(error.Rule, Is.EqualTo(SafeTensorsRule.TensorNotFound));
    }

    [Test]
    public void GetData_of_a_tensor_above_2_GiB_is_TensorTooLarge()
    {
        // The data is a sparse hole made by SetLength, so the 2 GiB cost neither time nor disk space.
        const long size = (long)int.MaxValue + 1;
        string header = $$$"""{"big":{"dtype":"U8","shape":[{{{size}}}],"data_offsets":[0,{{{size}}}]}}""";
        string path = Craft("big.safetensors", header, data: []);
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write))
            stream.SetLength(stream.Length + size);

        using var file = SafeTensorsFile.Open(path);

        var error = Assert.Throws<SafeTensorsException>(() => file.GetData("big"))!;
        Assert.That(error.Rule, Is.EqualTo(SafeTensorsRule.TensorTooLarge));
        Assert.That(error, Is.InstanceOf<HorizonException>());
    }

    [Test]
    public void GetData_after_Dispose_throws_ObjectDisposedException()
    {
        string path = InDirectory("disposed.safetensors");
        SafeTensorsWriter.Write(path, [("x", SafeTensorsDType.F32, [2], new byte[8])]);
        var file = SafeTensorsFile.Open(path);
        var earlierView = file.GetData("x");

        file.Dispose();
        file.Dispose(); // a second Dispose is harmless

        Assert.Throws<ObjectDisposedException>(() => file.GetData("x"));
        Assert.Throws<ObjectDisposedException>(() => _ = earlierView.Span.Length, "a view taken before Dispose must not read unmapped memory");
        Assert.Throws<ObjectDisposedException>(() => earlierView.Pin());
    }

    [Test]
    public void File_can_be_deleted_after_Dispose()
    {
        string path = InDirectory("delete-me.safetensors");
        SafeTensorsWriter.Write(path, [("x", SafeTensorsDType.U8, [4], [1, 2, 3, 4])]);
        var file = SafeTensorsFile.Open(path);
        Assert.That(file.GetData("x").Span[3], Is.EqualTo((byte)4));
        // While mapped the file is held (on Linux through .NET's advisory lock), so exclusive access is refused...
        Assert.Throws<IOException>(() => new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None).Dispose());

        file.Dispose();

        // ...and once disposed nothing holds it any more.
        using (new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None)) { }
        File.Delete(path);

        Assert.That(File.Exists(path), Is.False);
    }

    [Test]
    public void Failed_open_leaves_the_file_closed()
    {
        string path = Craft("rejected.safetensors", """{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""", data: new byte[4]);
        Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path));
        // Opening for exclusive write fails on every platform if the reader left a handle behind.
        using (new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None)) { }
        File.Delete(path);
        Assert.That(File.Exists(path), Is.False);
    }

    // ---- Helpers ------------------------------------------------------------------------------------------------

    /// <summary>Opens <paramref name="path"/>, expecting <paramref name="rule"/> and a one-line message that names the file.</summary>
    private static SafeTensorsException AssertBreaks(string path, SafeTensorsRule rule)
    {
        var error = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path).Dispose())!;
        Assert.That(error.Rule, Is.EqualTo(rule), error.Message);
        Assert.That(error.FilePath, Is.EqualTo(path));
        Assert.That(error.Message, Does.StartWith($"{path}: {rule}: "));
        Assert.That(error.Message, Does.Not.Contain('\n').And.Not.Contain('\r'));
        return error;
    }

    private string InDirectory(string fileName) => Path.Combine(_directory, fileName);

    private string Raw(string fileName, byte[] bytes)
    {
        string path = InDirectory(fileName);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>A file with a correct length prefix for <paramref name="header"/> (UTF-8) followed by <paramref name="data"/>.</summary>
    private string Craft(string fileName, string header, byte[] data)
    {
        byte[] headerBytes = Encoding.UTF8.GetBytes(header);
        return Raw(fileName, [.. Prefix((ulong)headerBytes.Length), .. headerBytes, .. data]);
    }

    private static byte[] Prefix(ulong headerLength)
    {
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, headerLength);
        return prefix;
    }

    private static byte[] Bytes<T>(T[] values) where T : struct => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
