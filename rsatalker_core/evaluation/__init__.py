"""Evaluation: the DualTalk protocol over a split (``rsatalker evaluate``) and recorded ROS 2
sessions (``rsatalker evaluate-bag``). The metrics themselves are in
:mod:`rsatalker_core.metrics`."""
