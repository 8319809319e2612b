"""Code that runs inside the guest VM: the agent and the uapi binding.

Nothing here imports the host side of the harness.
"""
