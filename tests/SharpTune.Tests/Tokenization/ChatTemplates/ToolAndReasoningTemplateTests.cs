using SharpTune.Tokenization.ChatTemplates;

namespace SharpTune.Tests.Tokenization.ChatTemplates;

/// <summary>
/// Conversations with tool calls, tool responses and reasoning, passed as full message dictionaries through
/// <c>extra["messages"]</c> (which replaces the plain <see cref="ChatMessage"/> list).
/// </summary>
public class ToolAndReasoningTemplateTests
{
    static Dictionary<string, object?> Message(string role, string content, object? toolCalls = null)
    {
        var message = new Dictionary<string, object?> { ["role"] = role, ["content"] = content };
        if (toolCalls != null) message["tool_calls"] = toolCalls;
        return message;
    }

    static readonly object[] WeatherCall =
    [
        new Dictionary<string, object?>
        {
            ["type"] = "function",
            ["function"] = new Dictionary<string, object?>
            {
                ["name"] = "get_weather",
                ["arguments"] = new Dictionary<string, object?> { ["city"] = "Bern" },
            },
        },
    ];

    static readonly Dictionary<string, object?> ToolConversation = new()
    {
        ["messages"] = new[]
        {
            Message("user", "Weather in Bern?"),
            Message("assistant", "", WeatherCall),
            Message("tool", "{\"temp\": 21}"),
            Message("assistant", "It is 21 degrees."),
        },
    };

    [Fact]
    public void Qwen25_renders_tool_calls_and_wraps_tool_responses_in_a_user_turn()
    {
        var text = ChatTemplate.Parse(ChatTemplateFixtures.Qwen25, "Qwen2.5").Render([], true, null, "<|im_end|>", ToolConversation);
        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
            "<|im_start|>user\nWeather in Bern?<|im_end|>\n" +
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bern\"}}\n</tool_call><|im_end|>\n" +
            "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n" +
            "<|im_start|>assistant\nIt is 21 degrees.<|im_end|>\n" +
            "<|im_start|>assistant\n",
            text);
    }

    [Fact]
    public void Qwen3_renders_tool_calls_like_qwen25_without_a_default_system_prompt()
    {
        var text = ChatTemplate.Parse(ChatTemplateFixtures.Qwen3, "Qwen3").Render([], false, null, "<|im_end|>", ToolConversation);
        Assert.Equal(
            "<|im_start|>user\nWeather in Bern?<|im_end|>\n" +
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bern\"}}\n</tool_call><|im_end|>\n" +
            "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n" +
            "<|im_start|>assistant\n<think>\n\n</think>\n\nIt is 21 degrees.<|im_end|>\n",
            text);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Qwen3_keeps_reasoning_after_the_last_query_and_can_switch_thinking_off(bool addGenerationPrompt)
    {
        ChatMessage[] conversation = [new("system", "Be brief."), new("user", "Hi"), new("assistant", "<think>\nhmm\n</think>\n\nHello!")];
        var extra = new Dictionary<string, object?> { ["enable_thinking"] = false };
        var text = ChatTemplate.Parse(ChatTemplateFixtures.Qwen3, "Qwen3").Render(conversation, addGenerationPrompt, null, "<|im_end|>", extra);
        Assert.Equal(
            "<|im_start|>system\nBe brief.<|im_end|>\n" +
            "<|im_start|>user\nHi<|im_end|>\n" +
            "<|im_start|>assistant\n<think>\nhmm\n</think>\n\nHello!<|im_end|>\n" +
            (addGenerationPrompt ? "<|im_start|>assistant\n<think>\n\n</think>\n\n" : ""),
            text);
    }

    [Fact]
    public void Qwen3_drops_reasoning_of_turns_before_the_last_query()
    {
        ChatMessage[] conversation =
        [
            new("user", "Hi"), new("assistant", "<think>\nold\n</think>\n\nHello!"), new("user", "Bye"),
        ];
        var text = ChatTemplate.Parse(ChatTemplateFixtures.Qwen3, "Qwen3").Render(conversation, true, null, "<|im_end|>");
        Assert.Equal(
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n" +
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
            text);
    }

    [Fact]
    public void Llama32_renders_a_single_tool_call_and_an_ipython_response()
    {
        var extra = new Dictionary<string, object?>(ToolConversation) { ["date_string"] = "26 Jul 2024" };
        var text = ChatTemplate.Parse(ChatTemplateFixtures.Llama32, "Llama-3.2").Render([], false, "<|begin_of_text|>", "<|eot_id|>", extra);
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWeather in Bern?<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Bern\"}}<|eot_id|>" +
            "<|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"temp\\\": 21}\"<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nIt is 21 degrees.<|eot_id|>",
            text);
    }
}
