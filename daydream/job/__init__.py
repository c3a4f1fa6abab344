"""A job, not a rank: ranks coupled through their collectives (layer above daydream.sim).

sources    -> one rank's trace at a time (in process or on a Dask worker)
collectives-> each rank's collectives, matched to their peers across ranks
reduce     -> a rank reduced to its collectives and the max-plus paths between them
couple     -> the coupled replay of all ranks on those reductions
See docs/multirank.md.
"""
