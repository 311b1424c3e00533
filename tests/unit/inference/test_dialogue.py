"""The embedded model's dialogue prompt: what a base model is given to continue."""

from __future__ import annotations

from aiaas.inference.providers import dialogue


class TestRender:
    def test_the_conversation_follows_the_fixed_prefix_and_ends_on_the_assistant(self) -> None:
        prompt = dialogue.render([{"role": "user", "content": "Hello"}])
        # The prefix is the same for every request without a system message: the KV cache keeps it.
        assert prompt == dialogue.PREFIX + "User: Hello\nAssistant:"

    def test_a_system_message_replaces_the_preamble_but_keeps_the_examples(self) -> None:
        prompt = dialogue.render([{"role": "system", "content": "Answer in French."},
                                  {"role": "developer", "content": "Be terse."},
                                  {"role": "user", "content": "Hi"}])
        assert prompt.startswith("Answer in French. Be terse.\n\nUser: Hi there!")
        assert dialogue.PREAMBLE not in prompt

    def test_turns_read_like_the_examples(self) -> None:
        prompt = dialogue.render([
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Capital"}, {"type": "image_url"},
                                         {"type": "text", "text": "of France?"}]}])
        assert prompt.endswith("User: Hi\nAssistant: Hello.\n\nUser: Capital of France?\nAssistant:")

    def test_a_blank_line_inside_a_turn_cannot_end_the_answer_it_shows(self) -> None:
        prompt = dialogue.render([{"role": "user", "content": "one\n\n\ntwo\n"}])
        assert prompt.endswith("User: one\ntwo\nAssistant:")

    def test_empty_turns_are_left_out_and_tool_results_read_as_the_user(self) -> None:
        prompt = dialogue.render([{"role": "user", "content": ""}, {"role": "tool", "content": "42"},
                                  {"role": "assistant", "content": None}])
        assert prompt.endswith("\n\nUser: 42\nAssistant:")

    def test_generation_stops_at_the_next_turn_or_a_blank_line(self) -> None:
        assert dialogue.STOPS == ["\nUser:", "\n\n"]
