namespace Horizon;

/// <summary>
/// The state of a model that reads its input in blocks of <see cref="BlockLength"/> tokens and predicts a block only
/// from the blocks before it: a two-level model such as the Block Transformer (a spec with <c>levels</c>, and
/// <see cref="Ops.BlockTransformerState"/>). Its first block has no prediction, so a state places
/// <see cref="FirstBlockPadding"/> pad tokens before token 0: token t sits at stream position t + P, and the logits row
/// of token t (the distribution of the token after it) is defined only when t + P + 1 ≥ <see cref="BlockLength"/>; the
/// other rows are NaN. The default P = L − 1 ends block 0 with token 0, so every row is defined.
/// </summary>
public interface IBlockModelState : IModelState
{
    /// <summary>L: tokens per block.</summary>
    int BlockLength { get; }

    /// <summary>P: pad tokens before token 0 (0 ≤ P &lt; <see cref="BlockLength"/>).</summary>
    int FirstBlockPadding { get; }

    /// <summary>Forgets every token and places <paramref name="firstBlockPadding"/> pad tokens before the next token 0.</summary>
    /// <exception cref="ArgumentOutOfRangeException">P is not in [0, <see cref="BlockLength"/>).</exception>
    void Reset(int firstBlockPadding);
}
