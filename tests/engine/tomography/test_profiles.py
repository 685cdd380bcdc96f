"""One direction's stack of slices and its scores agree with the logit profiles of reconstruct()."""

import torch

from tonno_engine import radon_sum
from tonno_engine.base.events import Partial, Progress
from tonno_engine.tomography.phantoms import balls_phantom
from tonno_engine.tomography.plan import Plan
from tonno_engine.tomography.profiles import direction_stack_iter, profiles


def test_direction_stack_equals_the_profile_and_its_slices(device):
    volume = balls_phantom((20, 22, 24))
    normal = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    events = list(direction_stack_iter(volume, radon_sum, normal, Plan(slices=9, slice_size=24, device=device, batch_size=4)))
    assert [e.done for e in events if isinstance(e, Progress)] == [4, 8, 11]
    stack = events[-1].value
    assert isinstance(events[-1], Partial) and events[-1].final
    assert stack.images.shape == (11, 24, 24) and stack.scores.shape == (11,)
    torch.testing.assert_close(stack.scores, radon_sum(stack.images))
    expected = profiles(volume, radon_sum, (normal / normal.norm())[None], Plan(slices=9, slice_size=24, device=device))[0]
    torch.testing.assert_close(stack.scores, expected)
    assert abs(float(stack.normal @ stack.u)) < 1e-12 and abs(float(stack.normal @ stack.v)) < 1e-12
    plan = Plan(slices=9, slice_size=24, device=device)
    light = list(direction_stack_iter(volume, radon_sum, normal, plan, keep_images=False))[-1].value
    assert light.images is None
    torch.testing.assert_close(light.scores, stack.scores)
