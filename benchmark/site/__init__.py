"""The static leaderboard: pages built from the results store (leaderboard), inline SVG plots
(svgplot), and the pages other layers contribute (benchmarks, reproductions, studies).
"""
