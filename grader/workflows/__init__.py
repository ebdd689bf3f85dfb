"""The course's workflows around the grading engine: release the student notebooks, build the
students' bundle, run notebooks, make an nbgrader course directory, autograde a class into its
gradebook, render feedback, and report a learner's progress. The ``course`` command line
(:mod:`grader.cli`) is a thin layer over these."""
