"""The GPU resource: detects the card at run start and fills in precision, workers, accumulation."""

import os

import dagster as dg
from pydantic import PrivateAttr

from imgcls_pipeline.core.hardware import (
    DeviceProps,
    HardwareSettings,
    probe_devices_in_subprocess,
    resolve_hardware,
)
from imgcls_pipeline.core.settings import TrainingConfig


class GpuResource(dg.ConfigurableResource):
    """None means automatic, from the specification's GPU table; an explicit value wins.

    A value set in the training asset's run config (``use_bf16``, ``num_workers``,
    ``gradient_accumulation_steps``) wins over this resource's value.
    """

    use_bf16: bool | None = None
    num_workers: int | None = None
    accum_steps: int | None = None

    _props: DeviceProps | None = PrivateAttr(default=None)
    _gpu_count: int = PrivateAttr(default=0)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._props, self._gpu_count = probe_devices_in_subprocess()
        if context.log is not None:
            found = self._props.name if self._props else "no CUDA GPU (running on the CPU)"
            context.log.info(f"GPU resource: {found}, {self._gpu_count} device(s)")

    @property
    def gpu_count(self) -> int:
        return self._gpu_count

    def resolve(self, training: TrainingConfig | None = None) -> HardwareSettings:
        """The settings training runs with: run config, then this resource, then the table."""
        training = training or TrainingConfig()

        def pick(run_value, resource_value):
            return run_value if run_value is not None else resource_value

        return resolve_hardware(
            self._props,
            os.cpu_count() or 1,
            use_bf16=pick(training.use_bf16, self.use_bf16),
            num_workers=pick(training.num_workers, self.num_workers),
            accum_steps=pick(training.gradient_accumulation_steps, self.accum_steps),
        )
