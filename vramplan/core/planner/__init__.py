"""Planner: search the setups that fit a model on a cluster, rank them by step time, size clusters.

``search_plans(start, request)`` -> ``PlanResult``; ``size_cluster`` / ``nearest_options`` for the
"how many GPUs" and "nothing fits" questions. Pure standard library, like the rest of ``core``.
"""

from .nearest import nearest_options
from .result import NearestOption, Plan, PlanRequest, PlanResult, Rejection, Sizing
from .search import search_plans
from .sizing import rehost, size_cluster

__all__ = [
    "NearestOption", "Plan", "PlanRequest", "PlanResult", "Rejection", "Sizing", "nearest_options", "rehost",
    "search_plans", "size_cluster",
]
