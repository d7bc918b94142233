"""`tcli explain`'s walkthrough gives the illustrated guides' numbers, from the model's own code."""

import torch

from transformer_cli.explain import attention_walkthrough, format_walkthrough


def test_the_walkthrough_reproduces_the_textbook_self_attention_example():
    steps = {step.title: step.value for step in attention_walkthrough()}
    expected_scores = torch.tensor([[2, 4, 4], [4, 16, 12], [4, 12, 10]], dtype=torch.float64)
    torch.testing.assert_close(steps["scores"], expected_scores)
    torch.testing.assert_close(steps["scaled scores"], expected_scores / 3**0.5)
    torch.testing.assert_close(steps["weights"].sum(-1), torch.ones(3, dtype=torch.float64))
    first_output = torch.tensor([1.8638741, 6.3193707, 1.7041886], dtype=torch.float64)
    torch.testing.assert_close(steps["outputs"][0], first_output, atol=1e-6, rtol=0)  # as printed
    torch.testing.assert_close(steps["weighted values"].sum(0), steps["outputs"][0])


def test_the_walkthrough_prints_every_step_with_its_numbers():
    text = format_walkthrough(attention_walkthrough())
    assert text.count("\n\n") == 8 and "9. outputs" in text and "1.863874" in text
