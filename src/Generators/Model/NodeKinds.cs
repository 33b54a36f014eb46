namespace Horizon.Generators.Model
{
    /// <summary>Where a node may appear in a spec.</summary>
    internal enum NodeRole
    {
        /// <summary><c>mixer_norm</c>, <c>mlp_norm</c>, <c>final_norm</c>.</summary>
        Norm,

        /// <summary><c>mixer</c>: mixes information across positions (attention, gla, hyena, ...).</summary>
        Mixer,

        /// <summary><c>mlp</c>: per-position channel mixing.</summary>
        Mlp,
    }

    /// <summary>The JSON <c>kind</c> strings the generator knows. The parser's and emitter's kind tables use these.</summary>
    internal static class NodeKinds
    {
        public const string RmsNorm = "rms_norm";
        public const string LayerNorm = "layer_norm";
        public const string Attention = "attention";
        public const string GptNeoXAttention = "gpt_neox_attention";
        public const string Gla = "gla";
        public const string LinearAttention = "linear_attention";
        public const string SlidingWindowAttention = "sliding_window_attention";
        public const string CcaAttention = "cca_attention";
        public const string AgentAttention = "agent_attention";
        public const string Hyena = "hyena";
        public const string SwiGluMlp = "swiglu_mlp";
        public const string GeluMlp = "gelu_mlp";
        public const string Moe = "moe";

        public static string RoleName(NodeRole role) => role switch
        {
            NodeRole.Norm => "norm",
            NodeRole.Mixer => "mixer",
            _ => "MLP",
        };

        /// <summary>"a norm", "a mixer", "an MLP".</summary>
        public static string RoleWithArticle(NodeRole role) => (role == NodeRole.Mlp ? "an " : "a ") + RoleName(role);
    }
}
