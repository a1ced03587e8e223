using SharpTune.Tokenization.ChatTemplates;

namespace SharpTune.Tests.Tokenization.ChatTemplates;

/// <summary>
/// The templates real models ship, rendered for system + user + assistant + user, each compared with the prompt
/// written out by hand from the model's documented format. The last user turn ends in a newline, so templates
/// that trim (Llama 2, Llama 3) and those that keep content verbatim (ChatML, Zephyr) both show.
/// </summary>
public class RealTemplateTests
{
    static readonly ChatMessage[] Conversation =
    [
        new("system", "You are a helpful assistant."),
        new("user", "Hello!"),
        new("assistant", "Hi there. How can I help?"),
        new("user", "What is 2 + 2?\n"),
    ];

    sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;

        public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
    }

    static ChatTemplate Parse(string template, string name) =>
        ChatTemplate.Parse(template, name, new ChatTemplateOptions { Clock = new FixedClock(new(2026, 11, 30, 3, 0, 0, TimeSpan.Zero)) });

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Qwen25_is_chatml(bool addGenerationPrompt)
    {
        var text = Parse(ChatTemplateFixtures.Qwen25, "Qwen2.5").Render(Conversation, addGenerationPrompt, null, "<|im_end|>");
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
            "<|im_start|>user\nHello!<|im_end|>\n" +
            "<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n" +
            "<|im_start|>user\nWhat is 2 + 2?\n<|im_end|>\n" +
            (addGenerationPrompt ? "<|im_start|>assistant\n" : ""),
            text);
    }

    [Fact]
    public void Qwen25_adds_its_default_system_prompt()
    {
        var text = Parse(ChatTemplateFixtures.Qwen25, "Qwen2.5").Render([new("user", "Hi")], true, null, "<|im_end|>");
        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            text);
    }

    [Fact]
    public void Qwen25_lists_tools_as_json_in_the_system_turn()
    {
        var tool = new Dictionary<string, object?>
        {
            ["type"] = "function",
            ["function"] = new Dictionary<string, object?>
            {
                ["name"] = "get_weather",
                ["description"] = "Weather for a city, e.g. \"Zürich\"",
                ["parameters"] = new Dictionary<string, object?>
                {
                    ["type"] = "object",
                    ["properties"] = new Dictionary<string, object?> { ["city"] = new Dictionary<string, object?> { ["type"] = "string" } },
                    ["required"] = new[] { "city" },
                },
            },
        };
        var text = Parse(ChatTemplateFixtures.Qwen25, "Qwen2.5").Render(
            [new("system", "Be brief."), new("user", "Weather in Bern?")], true, null, "<|im_end|>",
            new Dictionary<string, object?> { ["tools"] = new[] { tool } });
        Assert.Equal(
            "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
            "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather for a city, e.g. \\\"Zürich\\\"\", " +
            "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n" +
            "</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
            "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" +
            "<|im_start|>user\nWeather in Bern?<|im_end|>\n<|im_start|>assistant\n",
            text);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Llama3_uses_header_tokens_and_trims_content(bool addGenerationPrompt)
    {
        var text = Parse(ChatTemplateFixtures.Llama3, "Llama-3").Render(Conversation, addGenerationPrompt, "<|begin_of_text|>", "<|eot_id|>");
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>" +
            (addGenerationPrompt ? "<|start_header_id|>assistant<|end_header_id|>\n\n" : ""),
            text);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Llama32_writes_knowledge_cutoff_and_todays_date(bool addGenerationPrompt)
    {
        var text = Parse(ChatTemplateFixtures.Llama32, "Llama-3.2").Render(Conversation, addGenerationPrompt, "<|begin_of_text|>", "<|eot_id|>");
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
            "Cutting Knowledge Date: December 2023\nToday Date: 30 Nov 2026\n\nYou are a helpful assistant.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>" +
            (addGenerationPrompt ? "<|start_header_id|>assistant<|end_header_id|>\n\n" : ""),
            text);
    }

    [Fact]
    public void Llama32_takes_date_string_from_extra_and_puts_tools_in_the_first_user_turn()
    {
        var tool = new Dictionary<string, object?> { ["name"] = "now", ["parameters"] = new Dictionary<string, object?>() };
        var text = Parse(ChatTemplateFixtures.Llama32, "Llama-3.2").Render(
            [new("user", "Time?")], false, "<|begin_of_text|>", "<|eot_id|>",
            new Dictionary<string, object?> { ["date_string"] = "01 Jan 2025", ["tools"] = new[] { tool } });
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
            "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\n" +
            "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n" +
            "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n" +
            "{\n    \"name\": \"now\",\n    \"parameters\": {}\n}\n\nTime?<|eot_id|>",
            text);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TinyLlama_is_zephyr_with_a_line_break_after_each_turn(bool addGenerationPrompt)
    {
        var text = Parse(ChatTemplateFixtures.Zephyr, "TinyLlama").Render(Conversation, addGenerationPrompt, "<s>", "</s>");
        Assert.Equal(
            "<|system|>\nYou are a helpful assistant.</s>\n" +
            "<|user|>\nHello!</s>\n" +
            "<|assistant|>\nHi there. How can I help?</s>\n" +
            "<|user|>\nWhat is 2 + 2?\n</s>\n" +
            (addGenerationPrompt ? "<|assistant|>\n" : ""),
            text);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SmolLM2_is_chatml(bool addGenerationPrompt)
    {
        var text = Parse(ChatTemplateFixtures.SmolLM2, "SmolLM2").Render(Conversation, addGenerationPrompt, "<|im_start|>", "<|im_end|>");
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
            "<|im_start|>user\nHello!<|im_end|>\n" +
            "<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n" +
            "<|im_start|>user\nWhat is 2 + 2?\n<|im_end|>\n" +
            (addGenerationPrompt ? "<|im_start|>assistant\n" : ""),
            text);
    }

    [Fact]
    public void SmolLM2_adds_its_default_system_prompt()
    {
        var text = Parse(ChatTemplateFixtures.SmolLM2, "SmolLM2").Render([new("user", "Hi")], true, null, null);
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" +
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            text);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Llama2_folds_the_system_prompt_into_the_first_inst(bool addGenerationPrompt)
    {
        // Llama 2's template has no generation prompt: the prompt already ends in [/INST].
        var text = Parse(ChatTemplateFixtures.Llama2, "Llama-2").Render(Conversation, addGenerationPrompt, "<s>", "</s>");
        Assert.Equal(
            "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi there. How can I help? </s>" +
            "<s>[INST] What is 2 + 2? [/INST]",
            text);
    }

    [Fact]
    public void Llama2_raise_exception_surfaces_the_templates_message()
    {
        var template = Parse(ChatTemplateFixtures.Llama2, "llama2/tokenizer_config.json");
        var error = Assert.Throws<ChatTemplateException>(() =>
            template.Render([new("user", "a"), new("user", "b")], false, "<s>", "</s>"));
        Assert.Equal(ChatTemplateErrorKind.Raised, error.Kind);
        Assert.Equal("Conversation roles must alternate user/assistant/user/assistant/...", error.Detail);
        Assert.StartsWith("llama2/tokenizer_config.json:1:", error.Message);
    }
}
